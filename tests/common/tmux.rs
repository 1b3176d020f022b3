//! A real terminal for tests: a command runs in a tmux session of its own
//! while the test captures the pane.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
    /// Whether [`capture`](Self::capture) includes the lines scrolled off.
    history: bool,
}

impl Tmux {
    pub fn start(name: &str, command: &str) -> Tmux {
        Tmux::start_sized(name, command, 150)
    }

    /// [`start`](Self::start) in a pane `columns` wide.
    pub fn start_sized(name: &str, command: &str, columns: u16) -> Tmux {
        Tmux::new_session(name, false, columns, &format!("{command}; echo EXIT=$?; sleep 60"))
    }

    /// A detached session named after `name` and this process, `columns`
    /// wide and 50 high, running `command`; `history`: whether
    /// [`capture`](Self::capture) includes the lines scrolled off.
    fn new_session(name: &str, history: bool, columns: u16, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("mapreduce-test-{}-{name}", std::process::id()),
            history,
        };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d", "-x"])
            .arg(columns.to_string())
            .args(["-y", "50", command])
            .env("TERM", "xterm-256color")
            .env_remove("RUST_LOG")
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    /// An interactive shell (bash without startup files, prompt `$ `) in a
    /// pane 150 wide, into which commands are typed with
    /// [`type_line`](Self::type_line): as at a real terminal, Ctrl-C
    /// ([`send_keys`](Self::send_keys)`("C-c")`) reaches the command in the
    /// foreground, not the shell, and the same command can be typed again.
    /// [`capture`](Self::capture) includes the lines scrolled off.
    pub fn shell(name: &str) -> Tmux {
        let tmux = Tmux::new_session(
            name,
            true,
            150,
            "PS1='$ ' HISTFILE=/dev/null bash --norc --noprofile -i",
        );
        // Keys typed before the shell is ready could be lost.
        tmux.wait_for("the shell's prompt", |lines| {
            lines.last().is_some_and(|line| line == "$")
        });
        tmux
    }

    /// Type `line` into the pane and press Enter.
    pub fn type_line(&self, line: &str) {
        self.send_keys_with(&["-l", line]);
        self.send_keys("Enter");
    }

    /// Press `key` in the pane, in tmux's names: `C-c`, `Enter`, `Up`.
    pub fn send_keys(&self, key: &str) {
        self.send_keys_with(&[key]);
    }

    fn send_keys_with(&self, args: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys"])
            .args(args)
            .status()
            .expect("tmux send-keys");
        assert!(status.success(), "tmux send-keys {args:?} failed");
    }

    /// The pane's text, wrapped lines joined, trailing blank lines dropped
    /// (with the lines scrolled off for a [`shell`](Self::shell)).
    pub fn capture(&self) -> Vec<String> {
        let mut args = vec!["-L", &self.socket, "capture-pane", "-p", "-J"];
        if self.history {
            args.extend(["-S", "-"]);
        }
        let output = Command::new("tmux").args(args).output().expect("tmux capture-pane");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut lines: Vec<String> = text.lines().map(|line| line.trim_end().to_owned()).collect();
        while lines.last().is_some_and(|line| line.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// The pane's title, as escape sequences (OSC 0 / OSC 2) set it.
    pub fn pane_title(&self) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "display-message", "-p", "#{pane_title}"])
            .output()
            .expect("tmux display-message");
        assert!(output.status.success(), "tmux display-message failed");
        String::from_utf8_lossy(&output.stdout).trim_end().to_owned()
    }

    /// Capture until `done` holds for the pane, or fail after 60 s.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = self.capture();
            if done(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; pane:\n{}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

pub fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide tmux (.ci/run installs it)"
        );
        eprintln!("tmux not found: terminal test skipped");
    }
    found
}

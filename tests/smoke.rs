use mapreduce::prelude::*;
use rayon::prelude::*;

#[test]
fn smoke() {
    let job = jobs::find_first(|x: &u64, _: &()| *x == 12345);
    assert_eq!(par_map_reduce(0..1_000_000u64, &(), &job).unwrap(), Some(12345));
    let job = jobs::collect(|x: u64, _: &()| x);
    let v = (0..100_000u64).into_par_iter().filter(|x| x % 3 == 0).map_reduce(&(), &job).unwrap();
    assert_eq!(v, (0..100_000u64).filter(|x| x % 3 == 0).collect::<Vec<_>>());
    let v = (0..100_000u64).par_bridge().map_reduce(&(), &jobs::count(|_: &u64, _: &()| true)).unwrap();
    assert_eq!(v, 100_000);
    let job = jobs::collect(|x: u64, _: &()| { assert!(x != 777 && x != 5000, "boom {x}"); x });
    let err = par_map_reduce(0..10_000u64, &(), &job).unwrap_err();
    assert_eq!(err.index(), Some(777), "{err}");
    let s = par_map_reduce_iter(0..3_000_000u64, &(), jobs::sum(|x: u64, _: &()| x)).unwrap();
    assert_eq!(s, (0..3_000_000u64).sum::<u64>());
    let f = par_map_reduce_iter(0u64.., &(), jobs::find_first(|x: &u64, _: &()| *x == 2_000_001)).unwrap();
    assert_eq!(f, Some(2_000_001));
}

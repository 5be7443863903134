mod common;
use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
include!("props_strats.inc");
#[test]
fn stats() {
    let mut runner = TestRunner::default();
    let (mut sub, mut authed, mut closed, mut data) = (0, 0, 0, 0);
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..2000 {
        let cfg = session_config().new_tree(&mut runner).unwrap().current();
        let input = either_input().new_tree(&mut runner).unwrap().current();
        let mut h = Harness::new(cfg);
        h.feed(&input); h.run();
        if !h.submitted.is_empty() { sub += 1; }
        if h.session.is_authenticated() { authed += 1; }
        if h.closed { closed += 1; }
        if String::from_utf8_lossy(&h.transcript).contains("354 ") { data += 1; }
        for r in parse_replies(&h.transcript) { *codes.entry(r.head()).or_insert(0) += 1; }
    }
    println!("submitted {sub} authed {authed} closed {closed} data {data}");
    println!("{codes:?}");
}

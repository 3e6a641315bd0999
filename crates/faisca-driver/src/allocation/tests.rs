use std::time::Duration;

use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn settings(min: usize, max: usize) -> DynamicAllocation {
    DynamicAllocation {
        enabled: true,
        min_executors: min,
        max_executors: max,
        initial_executors: min,
        idle_timeout: Duration::from_secs(60),
        backlog_timeout: SECOND,
        sustained_backlog_timeout: SECOND,
        allocation_ratio: 1.0,
        shuffle_tracking: true,
        shuffle_tracking_timeout: None,
    }
}

fn busy(n: usize) -> Vec<ExecutorLoad> {
    (0..n)
        .map(|i| ExecutorLoad {
            id: ExecutorId(format!("e{i}")),
            running: 1,
            holds_needed_output: false,
        })
        .collect()
}

fn load(waiting: usize, running: usize, executors: Vec<ExecutorLoad>) -> Load {
    Load {
        waiting_tasks: waiting,
        running_tasks: running,
        executors,
    }
}

#[test]
fn a_backlog_asks_for_executors_in_doubling_rounds_up_to_the_cap() {
    let t0 = Instant::now();
    let mut a = DynamicAllocator::new(settings(0, 10), 1);
    let backlog = load(100, 0, vec![]);
    assert_eq!(
        a.update(t0, &backlog).target,
        None,
        "not before the backlog timeout"
    );
    let mut targets = Vec::new();
    for s in 1..=6 {
        if let Some(t) = a.update(t0 + s * SECOND, &backlog).target {
            targets.push(t);
        }
    }
    assert_eq!(
        targets,
        [1, 3, 7, 10],
        "+1, +2, +4, then capped by maxExecutors"
    );
    // The backlog ends: the next one starts from +1 again.
    a.update(t0 + 7 * SECOND, &load(0, 10, busy(10)));
    let mut a = DynamicAllocator::new(settings(0, usize::MAX), 2);
    // 5 tasks on 2-slot executors need at most 3.
    for s in 0..=10 {
        a.update(t0 + s * SECOND, &load(5, 0, vec![]));
    }
    assert_eq!(a.target(), 3);
}

#[test]
fn the_target_falls_with_the_work_but_not_below_the_minimum() {
    let t0 = Instant::now();
    let mut a = DynamicAllocator::new(settings(2, 10), 1);
    for s in 0..=5 {
        a.update(t0 + s * SECOND, &load(100, 0, vec![]));
    }
    assert_eq!(a.target(), 10);
    assert_eq!(
        a.update(t0 + 6 * SECOND, &load(0, 4, busy(4))).target,
        Some(4)
    );
    assert_eq!(
        a.update(t0 + 7 * SECOND, &load(0, 0, vec![])).target,
        Some(2)
    );
    let mut ratio = settings(0, 100);
    ratio.allocation_ratio = 0.5;
    let mut a = DynamicAllocator::new(ratio, 1);
    for s in 0..=20 {
        a.update(t0 + s * SECOND, &load(10, 0, vec![]));
    }
    assert_eq!(a.target(), 5, "half of full parallelism");
}

#[test]
fn idle_executors_go_after_the_timeout_unless_their_output_is_needed() {
    let t0 = Instant::now();
    let mut a = DynamicAllocator::new(settings(1, 10), 1);
    let idle = |id: &str, holds: bool| ExecutorLoad {
        id: ExecutorId(id.into()),
        running: 0,
        holds_needed_output: holds,
    };
    let executors = vec![idle("a", false), idle("b", true), idle("c", false)];
    let now = load(0, 0, executors.clone());
    assert!(a.update(t0, &now).release.is_empty());
    assert!(
        a.update(t0 + Duration::from_secs(59), &now)
            .release
            .is_empty()
    );
    let released = a.update(t0 + Duration::from_secs(60), &now).release;
    // `b` holds needed shuffle output: it stays, and keeps minExecutors = 1.
    assert_eq!(released, [ExecutorId("a".into()), ExecutorId("c".into())]);
    assert!(
        a.update(t0 + Duration::from_secs(61), &now)
            .release
            .is_empty(),
        "released once"
    );
    a.executor_gone(&ExecutorId("a".into()));
    let after = load(0, 0, vec![idle("b", true), idle("c", false)]);
    assert!(
        a.update(t0 + Duration::from_secs(600), &after)
            .release
            .is_empty()
    );
    // With a shuffle tracking timeout, `b` goes once it passed.
    let mut tracked = settings(0, 10);
    tracked.shuffle_tracking_timeout = Some(Duration::from_secs(120));
    let mut a = DynamicAllocator::new(tracked, 1);
    let only_b = load(0, 0, vec![idle("b", true)]);
    a.update(t0, &only_b);
    assert!(
        a.update(t0 + Duration::from_secs(119), &only_b)
            .release
            .is_empty()
    );
    assert_eq!(
        a.update(t0 + Duration::from_secs(120), &only_b).release,
        [ExecutorId("b".into())]
    );
    // A task resets the idle clock.
    let mut a = DynamicAllocator::new(settings(0, 10), 1);
    a.update(t0, &load(0, 0, vec![idle("x", false)]));
    let working = ExecutorLoad {
        running: 1,
        ..idle("x", false)
    };
    a.update(t0 + Duration::from_secs(30), &load(0, 1, vec![working]));
    let later = a.update(
        t0 + Duration::from_secs(80),
        &load(0, 0, vec![idle("x", false)]),
    );
    assert!(later.release.is_empty());
    // Never below minExecutors.
    let mut a = DynamicAllocator::new(settings(2, 10), 1);
    let three = load(
        0,
        0,
        vec![idle("a", false), idle("c", false), idle("d", false)],
    );
    a.update(t0, &three);
    assert_eq!(
        a.update(t0 + Duration::from_secs(60), &three).release,
        [ExecutorId("a".into())]
    );
}

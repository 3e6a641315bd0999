use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn allocator() -> Allocator {
    Allocator::new(AllocatorSettings {
        batch_size: 5,
        batch_delay: SECOND,
        executor_timeout: Duration::from_secs(600),
        delete_on_termination: true,
    })
}

fn state(number: u64, phase: Phase) -> PodState {
    PodState {
        name: format!("app-exec-{number}"),
        number,
        phase,
        deleting: false,
        reason: None,
        stuck: false,
    }
}

/// The pods `actions` create (`creates`) or delete.
fn numbers(actions: &[Action], creates: bool) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match (a, creates) {
            (Action::Create(n), true) | (Action::Delete(n), false) => Some(*n),
            _ => None,
        })
        .collect()
}

fn created(actions: &[Action]) -> Vec<u64> {
    numbers(actions, true)
}

fn deleted(actions: &[Action]) -> Vec<u64> {
    numbers(actions, false)
}

/// The API server shows every created pod, in `phase`.
fn show(snapshot: &mut PodSnapshot, numbers: &[u64], phase: Phase) {
    for n in numbers {
        snapshot.upsert(state(*n, phase));
    }
}

#[test]
fn pods_are_created_in_batches_once_the_previous_batch_shows_up() {
    let t0 = Instant::now();
    let mut a = allocator();
    let mut snapshot = PodSnapshot::default();
    a.set_target(7);
    assert_eq!(created(&a.allocate(t0, &snapshot)), [1, 2, 3, 4, 5]);
    // Not seen yet: no new batch, even after the delay.
    assert!(a.allocate(t0 + 2 * SECOND, &snapshot).is_empty());
    show(&mut snapshot, &[1, 2, 3, 4, 5], Phase::Pending);
    assert_eq!(created(&a.allocate(t0 + 2 * SECOND, &snapshot)), [6, 7]);
    show(&mut snapshot, &[6, 7], Phase::Running);
    assert!(a.allocate(t0 + 4 * SECOND, &snapshot).is_empty());
    assert_eq!(a.alive(), 7);
    // Within one batch delay nothing more is created even when wanted.
    a.set_target(8);
    assert!(
        a.allocate(t0 + 2 * SECOND + SECOND / 2, &snapshot)
            .is_empty()
    );
    assert_eq!(created(&a.allocate(t0 + 3 * SECOND, &snapshot)), [8]);
}

#[test]
fn a_failed_pod_is_reported_with_its_reason_deleted_and_replaced() {
    let t0 = Instant::now();
    let mut a = allocator();
    let mut snapshot = PodSnapshot::default();
    a.set_target(2);
    a.allocate(t0, &snapshot);
    show(&mut snapshot, &[1, 2], Phase::Running);
    let mut oom = state(2, Phase::Failed);
    oom.reason = Some("OOMKilled (exit code 137)".into());
    snapshot.upsert(oom);
    let (exits, actions) = a.lifecycle(t0 + SECOND, &mut snapshot);
    assert_eq!(
        exits,
        [Exit {
            number: 2,
            reason: "pod app-exec-2 failed: OOMKilled (exit code 137)".into(),
            expected: false
        }]
    );
    assert_eq!(actions, [Action::Delete(2)]);
    // Reported once.
    assert!(a.lifecycle(t0 + SECOND, &mut snapshot).0.is_empty());
    assert_eq!(created(&a.allocate(t0 + SECOND, &snapshot)), [3]);
    // Its deletion is not reported again.
    snapshot.remove(state(2, Phase::Failed));
    assert!(a.lifecycle(t0 + 2 * SECOND, &mut snapshot).0.is_empty());
}

#[test]
fn a_deleted_or_vanished_pod_is_an_exit_and_a_replacement_follows() {
    let t0 = Instant::now();
    let mut a = allocator();
    let mut snapshot = PodSnapshot::default();
    a.set_target(2);
    a.allocate(t0, &snapshot);
    show(&mut snapshot, &[1, 2], Phase::Running);
    snapshot.remove(state(1, Phase::Running));
    snapshot.replace(vec![]);
    let (exits, _) = a.lifecycle(t0, &mut snapshot);
    let reasons: Vec<&str> = exits.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "pod app-exec-1 deleted",
            "pod app-exec-2 missing from the pod list"
        ]
    );
    assert!(exits.iter().all(|e| !e.expected));
    assert_eq!(created(&a.allocate(t0 + SECOND, &snapshot)), [3, 4]);
}

#[test]
fn a_pod_pending_past_the_timeout_is_deleted_and_replaced() {
    let t0 = Instant::now();
    let mut a = allocator();
    let mut snapshot = PodSnapshot::default();
    a.set_target(1);
    a.allocate(t0, &snapshot);
    show(&mut snapshot, &[1], Phase::Pending);
    assert!(
        a.lifecycle(t0 + Duration::from_secs(599), &mut snapshot)
            .0
            .is_empty()
    );
    let (exits, actions) = a.lifecycle(t0 + Duration::from_secs(600), &mut snapshot);
    assert_eq!(exits.len(), 1);
    assert!(
        exits[0]
            .reason
            .contains("faisca.kubernetes.allocation.executor.timeout"),
        "{exits:?}"
    );
    assert_eq!(actions, [Action::Delete(1)]);
    assert_eq!(
        created(&a.allocate(t0 + Duration::from_secs(600), &snapshot)),
        [2]
    );
}

#[test]
fn a_pod_stuck_on_its_image_is_reported_at_once() {
    let t0 = Instant::now();
    let mut a = allocator();
    let mut snapshot = PodSnapshot::default();
    a.set_target(1);
    a.allocate(t0, &snapshot);
    let mut stuck = state(1, Phase::Pending);
    stuck.stuck = true;
    stuck.reason = Some("ImagePullBackOff: no such image".into());
    snapshot.upsert(stuck);
    let (exits, actions) = a.lifecycle(t0 + SECOND, &mut snapshot);
    assert_eq!(
        exits[0].reason,
        "pod app-exec-1 cannot start: ImagePullBackOff: no such image"
    );
    assert_eq!(actions, [Action::Delete(1)]);
}

#[test]
fn fewer_executors_delete_the_newest_pending_pods_first() {
    let t0 = Instant::now();
    let mut a = allocator();
    let mut snapshot = PodSnapshot::default();
    a.set_target(4);
    a.allocate(t0, &snapshot);
    show(&mut snapshot, &[1, 2], Phase::Running);
    show(&mut snapshot, &[3, 4], Phase::Pending);
    a.set_target(1);
    let actions = a.allocate(t0 + SECOND, &snapshot);
    assert_eq!(deleted(&actions), [4, 3, 2]);
    assert_eq!(a.alive(), 1);
    // Their ends are expected, and none is replaced.
    snapshot.upsert(state(2, Phase::Succeeded));
    snapshot.remove(state(3, Phase::Pending));
    snapshot.remove(state(4, Phase::Pending));
    let (exits, _) = a.lifecycle(t0 + 2 * SECOND, &mut snapshot);
    assert_eq!(exits.len(), 3);
    assert!(exits.iter().all(|e| e.expected), "{exits:?}");
    assert!(a.allocate(t0 + 3 * SECOND, &snapshot).is_empty());
}

#[test]
fn a_released_executor_is_deleted_and_not_replaced() {
    let t0 = Instant::now();
    let mut a = allocator();
    let mut snapshot = PodSnapshot::default();
    a.set_target(2);
    a.allocate(t0, &snapshot);
    show(&mut snapshot, &[1, 2], Phase::Running);
    assert!(a.release(1));
    assert!(!a.release(1), "once");
    assert!(!a.release(9), "not ours");
    assert_eq!(a.target(), 1);
    assert_eq!(deleted(&a.allocate(t0 + SECOND, &snapshot)), [1]);
    snapshot.remove(state(1, Phase::Succeeded));
    let (exits, _) = a.lifecycle(t0 + 2 * SECOND, &mut snapshot);
    assert!(exits[0].expected);
    assert!(a.allocate(t0 + 3 * SECOND, &snapshot).is_empty());
}

use super::*;
use datafusion::arrow::datatypes::Schema;

/// A job of stages `(tasks, inputs)`.
fn job_of(stages: &[(u32, &[u32])], max_attempts: u32, stage_max_attempts: u32) -> JobState {
    let planned = PlannedJob {
        user: None,
        session: SessionId("s".into()),
        stages: stages
            .iter()
            .enumerate()
            .map(|(id, (tasks, inputs))| PlannedStage {
                id: id as u32,
                plan: Bytes::new(),
                hash_partitioned: false,
                output_partitions: 1,
                tasks: *tasks,
                inputs: inputs.to_vec(),
                output_description: String::new(),
                stateful: false,
                reads_kafka: false,
                preferred: vec![],
                operators: String::new(),
            })
            .collect(),
        schema: Arc::new(Schema::empty()),
        task_config: Arc::new(vec![]),
        max_attempts,
        stage_max_attempts,
        name: String::new(),
        sql: String::new(),
        write: None,
        stop_before_source_commit: false,
        kafka: Vec::new(),
    };
    JobState::new(JobId("j".into()), 0, planned, 20)
}

/// Stage 0 (2 tasks) and an empty stage 1 feed stage 2 (1 task).
fn job(max_attempts: u32) -> JobState {
    job_of(&[(2, &[]), (0, &[]), (1, &[0, 1])], max_attempts, 4)
}

/// 0 (2 tasks) → 1 (2 tasks) → 2 (1 task).
fn chain() -> JobState {
    job_of(&[(2, &[]), (2, &[0]), (1, &[1])], 4, 2)
}

fn e(name: &str) -> ExecutorId {
    ExecutorId(name.into())
}

fn output(executor: &ExecutorId, attempt: u32) -> TaskOutput {
    TaskOutput {
        executor: executor.clone(),
        flight_address: "h:1".into(),
        attempt,
        stats: vec![],
        written: vec![],
        records_sent: 0,
        metrics: Default::default(),
    }
}

/// Launch every ready task on `executor`: `(stage, partition, attempt)`.
fn launch_all(job: &mut JobState, executor: &ExecutorId) -> Vec<(u32, u32, u32)> {
    let mut launched = Vec::new();
    while let Some((s, p, _)) = job.next_task() {
        let task = job.launch(s, p, executor).unwrap();
        launched.push((s, p, task.attempt));
    }
    launched
}

fn succeed_all(job: &mut JobState, executor: &ExecutorId, tasks: &[(u32, u32, u32)]) {
    for &(s, p, a) in tasks {
        assert_eq!(
            job.task_succeeded(s, p, a, output(executor, a)),
            TaskOutcome::Finished
        );
    }
}

fn fetch_failure(stage: u32, map: u32, executor: &str) -> Error {
    Error::fetch_failed(stage, map, executor, "connection refused")
}

#[test]
fn stages_run_in_dependency_order() {
    let e = e("e");
    let mut job = job(4);
    // Stage 1 has no tasks: it is complete at once; stage 2 waits for stage 0.
    assert_eq!(launch_all(&mut job, &e), vec![(0, 0, 0), (0, 1, 0)]);
    succeed_all(&mut job, &e, &[(0, 0, 0)]);
    assert!(!job.has_ready());
    succeed_all(&mut job, &e, &[(0, 1, 0)]);
    let (s, p, _) = job.next_task().unwrap();
    assert_eq!((s, p), (2, 0));
    let launch = job.launch(2, 0, &e).unwrap();
    assert_eq!(launch.inputs.len(), 2);
    assert_eq!(launch.inputs[0].outputs.len(), 2);
    assert!(launch.inputs[1].outputs.is_empty());
    job.task_succeeded(2, 0, 0, output(&e, 0));
    assert!(matches!(job.status, JobStatus::Succeeded));
    assert_eq!(job.result_outputs().len(), 1);
}

#[test]
fn retries_prefer_another_executor_then_fail() {
    let a = e("a");
    let mut job = job(2);
    job.next_task().unwrap();
    job.launch(0, 0, &a).unwrap();
    assert_eq!(
        job.task_failed(0, 0, 0, Error::external("flaky")),
        TaskOutcome::Retry
    );
    // A stale report of the old attempt changes nothing.
    assert_eq!(
        job.task_failed(0, 0, 0, Error::external("flaky")),
        TaskOutcome::Ignored
    );
    let (s, p, avoid) = job.next_task().unwrap();
    assert_eq!((s, p, avoid), (0, 0, Some(a.clone())));
    let launch = job.launch(0, 0, &a).unwrap();
    assert_eq!(launch.attempt, 1);
    assert_eq!(
        job.task_failed(0, 0, 1, Error::external("flaky")),
        TaskOutcome::JobFailed
    );
    let err = job.status.error().expect("failed");
    assert!(err.to_string().contains("failed 2 times"), "{err}");
    let info = job.info();
    assert_eq!(info.stages[0].failed_attempts, 2);
    assert_eq!(info.failures.len(), 2);
}

#[test]
fn user_errors_fail_at_once() {
    let e = e("e");
    let mut job = job(4);
    launch_all(&mut job, &e);
    assert_eq!(
        job.task_failed(0, 1, 0, Error::user("corrupt file x")),
        TaskOutcome::JobFailed
    );
    assert_eq!(job.status.error().unwrap().to_string(), "corrupt file x");
}

#[test]
fn taken_running_tasks_are_stopped_once() {
    let e = e("e");
    let mut job = job(4);
    launch_all(&mut job, &e);
    assert_eq!(job.running(), 2);
    assert_eq!(job.take_running_tasks().len(), 2);
    assert!(job.take_running_tasks().is_empty());
    assert_eq!(job.running(), 0);
    // A report from a stopped attempt changes nothing.
    assert_eq!(
        job.task_succeeded(0, 0, 0, output(&e, 0)),
        TaskOutcome::Ignored
    );
}

#[test]
fn a_fetch_failure_reruns_the_lost_map_outputs_not_the_reader() {
    let (a, b) = (e("a"), e("b"));
    let mut job = chain();
    // Stage 0: task 0 on a, task 1 on b.
    job.next_task().unwrap();
    job.launch(0, 0, &a).unwrap();
    job.next_task().unwrap();
    job.launch(0, 1, &b).unwrap();
    succeed_all(&mut job, &a, &[(0, 0, 0)]);
    succeed_all(&mut job, &b, &[(0, 1, 0)]);
    let readers = launch_all(&mut job, &b);
    assert_eq!(readers, vec![(1, 0, 0), (1, 1, 0)]);
    // Reader 1/0 cannot read map 0 from a: a's outputs are lost, map 0 runs again.
    assert_eq!(
        job.task_failed(1, 0, 0, fetch_failure(0, 0, "a")),
        TaskOutcome::Retry
    );
    // Reader 1/1 reports the same loss: already known, not counted again.
    assert_eq!(
        job.task_failed(1, 1, 0, fetch_failure(0, 0, "a")),
        TaskOutcome::Retry
    );
    assert_eq!(launch_all(&mut job, &b), vec![(0, 0, 1)]);
    succeed_all(&mut job, &b, &[(0, 0, 1)]);
    // Both readers run again; their attempts were not counted as failures.
    let again = launch_all(&mut job, &b);
    assert_eq!(again, vec![(1, 0, 1), (1, 1, 1)]);
    succeed_all(&mut job, &b, &again);
    let last = launch_all(&mut job, &b);
    succeed_all(&mut job, &b, &last);
    assert!(matches!(job.status, JobStatus::Succeeded));
    let info = job.info();
    assert_eq!(info.stages[0].rerun_tasks, 1);
    assert_eq!(info.stages[0].attempts, 3);
    assert_eq!(info.stages[1].fetch_failures, 1);
    assert_eq!(info.stages[1].failed_attempts, 2);
    assert!(job.stages[1].tasks.iter().all(|t| t.failures == 0));
}

#[test]
fn a_lost_executor_reruns_its_running_tasks_and_needed_outputs() {
    let (a, b) = (e("a"), e("b"));
    let mut job = chain();
    let maps = launch_all(&mut job, &a);
    succeed_all(&mut job, &a, &maps);
    // Reader 1/0 runs on b, reader 1/1 on a.
    job.next_task().unwrap();
    job.launch(1, 0, &b).unwrap();
    job.next_task().unwrap();
    job.launch(1, 1, &a).unwrap();
    assert_eq!(job.executor_lost(&a, "stream closed"), vec![(1, 1, 0)]);
    // Both map outputs were on a: they run again before any reader.
    let rerun = launch_all(&mut job, &b);
    assert_eq!(rerun, vec![(0, 0, 1), (0, 1, 1)]);
    // Reader 1/0 (on b) then fails to fetch from a: a known loss, it just waits.
    assert_eq!(
        job.task_failed(1, 0, 0, fetch_failure(0, 1, "a")),
        TaskOutcome::Retry
    );
    succeed_all(&mut job, &b, &rerun);
    let readers = launch_all(&mut job, &b);
    assert_eq!(readers, vec![(1, 0, 1), (1, 1, 1)]);
    succeed_all(&mut job, &b, &readers);
    let last = launch_all(&mut job, &b);
    succeed_all(&mut job, &b, &last);
    assert!(matches!(job.status, JobStatus::Succeeded));
    assert_eq!(job.info().stages[0].rerun_tasks, 2);
}

#[test]
fn outputs_nobody_needs_any_more_are_not_rerun() {
    let (a, b) = (e("a"), e("b"));
    let mut job = chain();
    let maps = launch_all(&mut job, &a);
    succeed_all(&mut job, &a, &maps);
    let readers = launch_all(&mut job, &b);
    succeed_all(&mut job, &b, &readers);
    job.next_task().unwrap();
    job.launch(2, 0, &b).unwrap();
    // Stage 0's outputs on a are lost, but stage 1 is complete: nothing to re-run.
    job.executor_lost(&a, "killed");
    assert!(!job.has_ready());
    assert_eq!(
        job.task_succeeded(2, 0, 0, output(&b, 0)),
        TaskOutcome::Finished
    );
    assert!(matches!(job.status, JobStatus::Succeeded));
}

#[test]
fn a_stage_that_keeps_losing_its_input_fails_the_job() {
    let (a, b) = (e("a"), e("b"));
    let mut job = chain(); // faisca.stage.maxAttempts = 2
    for round in 0..2 {
        let maps = launch_all(&mut job, &a);
        succeed_all(&mut job, &a, &maps);
        let readers = launch_all(&mut job, &b);
        let (s, p, attempt) = readers[0];
        let outcome = job.task_failed(s, p, attempt, fetch_failure(0, 0, "a"));
        if round == 0 {
            assert_eq!(outcome, TaskOutcome::Retry);
            // The other reader's report of the same loss.
            let (s, p, attempt) = readers[1];
            job.task_failed(s, p, attempt, fetch_failure(0, 0, "a"));
        } else {
            assert_eq!(outcome, TaskOutcome::JobFailed);
        }
    }
    let err = job.status.error().unwrap().to_string();
    assert!(
        err.contains("stage 1 failed 2 times") && err.contains("faisca.stage.maxAttempts"),
        "{err}"
    );
}

#[test]
fn a_fetch_failure_naming_no_output_of_the_job_counts_as_a_failure() {
    let a = e("a");
    let mut job = job_of(&[(1, &[])], 1, 4);
    launch_all(&mut job, &a);
    assert_eq!(
        job.task_failed(0, 0, 0, fetch_failure(7, 0, "a")),
        TaskOutcome::JobFailed
    );
}

#[test]
fn outputs_lost_while_not_needed_run_again_once_a_later_loss_needs_them() {
    let (a, b, c) = (e("a"), e("b"), e("c"));
    let mut job = chain();
    let maps = launch_all(&mut job, &a);
    succeed_all(&mut job, &a, &maps);
    let readers = launch_all(&mut job, &b);
    succeed_all(&mut job, &b, &readers);
    job.next_task().unwrap();
    job.launch(2, 0, &b).unwrap();
    // Stage 0's outputs go with a, but nobody needs them: still shown done, nothing re-run.
    job.executor_lost(&a, "killed");
    assert!(!job.has_ready());
    assert_eq!(job.info().stages[0].done, 2);
    assert_eq!(job.info().stages[0].rerun_tasks, 0);
    // b goes too: stage 2 needs stage 1 again, which needs stage 0 again.
    job.executor_lost(&b, "killed");
    let rerun = launch_all(&mut job, &c);
    assert_eq!(rerun, vec![(0, 0, 1), (0, 1, 1)]);
    succeed_all(&mut job, &c, &rerun);
    let readers = launch_all(&mut job, &c);
    assert_eq!(readers, vec![(1, 0, 1), (1, 1, 1)]);
    succeed_all(&mut job, &c, &readers);
    let last = launch_all(&mut job, &c);
    succeed_all(&mut job, &c, &last);
    assert!(matches!(job.status, JobStatus::Succeeded));
    let info = job.info();
    assert_eq!(
        info.stages
            .iter()
            .map(|s| s.rerun_tasks)
            .collect::<Vec<_>>(),
        vec![2, 2, 0]
    );
}

#[test]
fn a_departed_executor_hands_back_its_running_attempt_without_a_failure() {
    let (a, b) = (e("a"), e("b"));
    let mut job = job_of(&[(2, &[])], 1, 1); // one attempt allowed
    job.next_task().unwrap();
    job.launch(0, 0, &a).unwrap();
    assert!(job.needs_executor(&a));
    assert_eq!(job.executor_departed(&a), vec![(0, 0, 0)]);
    assert!(!job.needs_executor(&a));
    let rest = launch_all(&mut job, &b);
    assert_eq!(rest, vec![(0, 0, 1), (0, 1, 0)]);
    succeed_all(&mut job, &b, &rest);
    assert!(matches!(job.status, JobStatus::Succeeded));
    assert_eq!(job.info().stages[0].failed_attempts, 0);
    // The client has not read the result yet: b is still needed.
    assert!(job.needs_executor(&b));
}

#[test]
fn job_metrics_sum_each_tasks_last_successful_attempt() {
    let (a, b) = (e("a"), e("b"));
    let mut job = chain();
    let counted = |executor: &ExecutorId, attempt: u32, n: u64| TaskOutput {
        metrics: BTreeMap::from([("kafka.nullKeyRecordsSkipped".to_string(), n)]),
        ..output(executor, attempt)
    };
    job.next_task().unwrap();
    job.launch(0, 0, &a).unwrap();
    job.next_task().unwrap();
    job.launch(0, 1, &b).unwrap();
    job.task_succeeded(0, 0, 0, counted(&a, 0, 3));
    job.task_succeeded(0, 1, 0, counted(&b, 0, 4));
    assert_eq!(job.info().metrics["kafka.nullKeyRecordsSkipped"], 7);
    // Map 0's output is lost with a and runs again: its new attempt's count replaces the old.
    let readers = launch_all(&mut job, &b);
    for (s, p, attempt) in readers {
        job.task_failed(s, p, attempt, fetch_failure(0, 0, "a"));
    }
    let rerun = launch_all(&mut job, &b);
    assert_eq!(rerun, vec![(0, 0, 1)]);
    job.task_succeeded(0, 0, 1, counted(&b, 1, 3));
    let rest = launch_all(&mut job, &b);
    succeed_all(&mut job, &b, &rest);
    let last = launch_all(&mut job, &b);
    succeed_all(&mut job, &b, &last);
    assert!(matches!(job.status, JobStatus::Succeeded));
    assert_eq!(
        job.metrics(),
        BTreeMap::from([("kafka.nullKeyRecordsSkipped".to_string(), 7)])
    );
}

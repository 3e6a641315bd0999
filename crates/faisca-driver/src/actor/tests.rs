use super::*;

fn register(
    state: &mut DriverState,
    id: &str,
) -> mpsc::UnboundedReceiver<Result<DriverMessage, tonic::Status>> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let (reply, _) = oneshot::channel();
    state.receive(Message::ExecutorRegistered {
        id: ExecutorId(id.into()),
        flight_address: "127.0.0.1:1".into(),
        cores: 1,
        memory_bytes: 1 << 30,
        sender,
        reply,
    });
    receiver
}

fn executors(state: &mut DriverState) -> Vec<String> {
    executor_states(state)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn silent_executors_are_dropped_and_their_stream_closed() {
    let mut state = DriverState::new(DriverSettings {
        heartbeat_timeout: Duration::from_secs(10),
        retained_jobs: 10,
        retained_task_failures: 20,
        executor_instances: 0,
        ..DriverSettings::from_config(&faisca_common::FaiscaConfig::default())
    });
    let mut quiet = register(&mut state, "quiet");
    let _chatty = register(&mut state, "chatty");
    state.receive(Message::CheckHeartbeats {
        now: Instant::now() + Duration::from_secs(5),
    });
    assert_eq!(executors(&mut state), vec!["chatty", "quiet"]);
    // Both were last heard from 20 s ago; only "chatty" sends a heartbeat now.
    for e in state.executors.values_mut() {
        e.last_seen = Instant::now() - Duration::from_secs(20);
    }
    state.receive(Message::Heartbeat {
        executor: ExecutorId("chatty".into()),
        memory_used_bytes: 0,
        shuffle_memory_bytes: 0,
    });
    state.receive(Message::CheckHeartbeats {
        now: Instant::now() + Duration::from_secs(1),
    });
    assert_eq!(executors(&mut state), vec!["chatty"]);
    // The dropped executor's stream ends after the welcome message.
    assert!(matches!(quiet.try_recv(), Ok(Ok(_))));
    assert!(matches!(
        quiet.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
}

fn register_with_cores(
    state: &mut DriverState,
    id: &str,
    cores: u32,
) -> mpsc::UnboundedReceiver<Result<DriverMessage, tonic::Status>> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let (reply, _) = oneshot::channel();
    state.receive(Message::ExecutorRegistered {
        id: ExecutorId(id.into()),
        flight_address: "127.0.0.1:1".into(),
        cores,
        memory_bytes: 1 << 30,
        sender,
        reply,
    });
    receiver
}

fn session(state: &mut DriverState) -> SessionId {
    let (reply, mut answer) = oneshot::channel();
    state.receive(Message::CreateSession {
        config: FaiscaConfig::default(),
        owner: None,
        reply,
    });
    answer.try_recv().unwrap().unwrap()
}

fn submit(state: &mut DriverState, session: &SessionId, tasks: u32) -> JobId {
    submit_preferring(state, session, tasks, vec![])
}

fn submit_preferring(
    state: &mut DriverState,
    session: &SessionId,
    tasks: u32,
    preferred: Vec<Option<ExecutorId>>,
) -> JobId {
    let planned = PlannedJob {
        user: None,
        session: session.clone(),
        stages: vec![crate::scheduler::PlannedStage {
            id: 0,
            plan: bytes::Bytes::new(),
            hash_partitioned: false,
            output_partitions: 1,
            tasks,
            inputs: vec![],
            output_description: "result".into(),
            stateful: !preferred.is_empty(),
            reads_kafka: false,
            preferred,
            operators: "EmptyExec".into(),
        }],
        schema: Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        task_config: Arc::new(vec![]),
        max_attempts: 4,
        stage_max_attempts: 4,
        name: String::new(),
        sql: String::new(),
        write: None,
        stop_before_source_commit: false,
        kafka: Vec::new(),
    };
    let (reply, mut answer) = oneshot::channel();
    state.receive(Message::SubmitJob {
        job: planned,
        reply,
    });
    answer.try_recv().unwrap().unwrap()
}

/// Launches sent to an executor so far, as `(job, partition, attempt)`.
fn launches(
    receiver: &mut mpsc::UnboundedReceiver<Result<DriverMessage, tonic::Status>>,
) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    while let Ok(Ok(message)) = receiver.try_recv() {
        if let Some(driver_message::Message::LaunchTask(t)) = message.message {
            out.push((t.job_id, t.partition, t.attempt));
        }
    }
    out
}

fn succeed(state: &mut DriverState, job: &JobId, partition: u32) {
    succeed_on(state, "e", job, partition);
}

fn succeed_on(state: &mut DriverState, executor: &str, job: &JobId, partition: u32) {
    state.receive(Message::TaskStatus {
        executor: ExecutorId(executor.into()),
        status: TaskStatus {
            job_id: job.0.clone(),
            stage_id: 0,
            partition,
            attempt: 0,
            state: faisca_proto::TaskState::Succeeded as i32,
            error: None,
            partitions: vec![],
            elapsed_micros: 0,
            written: vec![],
            records_sent: 0,
            metrics: Default::default(),
        },
    });
}

#[test]
fn a_stateful_task_goes_to_the_executor_holding_its_state_when_it_has_a_free_slot() {
    let mut state = DriverState::new(DriverSettings {
        executor_instances: 0,
        ..DriverSettings::from_config(&faisca_common::FaiscaConfig::default())
    });
    let s = session(&mut state);
    let mut a = register_with_cores(&mut state, "a", 2);
    let mut b = register_with_cores(&mut state, "b", 2);
    // Left alone, "b" (the most free slots, then the last name) would get partition 0.
    let prefer = |id: &str| Some(ExecutorId(id.into()));
    let job = submit_preferring(
        &mut state,
        &s,
        3,
        vec![prefer("a"), prefer("a"), prefer("a")],
    );
    assert_eq!(
        launches(&mut a),
        vec![(job.0.clone(), 0, 0), (job.0.clone(), 1, 0)]
    );
    // "a" is full: the third goes elsewhere rather than waiting.
    assert_eq!(launches(&mut b), vec![(job.0.clone(), 2, 0)]);
}

#[test]
fn sessions_share_slots_and_jobs_of_one_session_run_in_order() {
    let mut state = DriverState::new(DriverSettings {
        heartbeat_timeout: Duration::from_secs(10),
        retained_jobs: 2,
        retained_task_failures: 20,
        executor_instances: 0,
        ..DriverSettings::from_config(&faisca_common::FaiscaConfig::default())
    });
    let (a, b) = (session(&mut state), session(&mut state));
    let a1 = submit(&mut state, &a, 2);
    let a2 = submit(&mut state, &a, 1);
    let b1 = submit(&mut state, &b, 2);
    let mut executor = register_with_cores(&mut state, "e", 2);
    // One slot each: session b is not starved by a's queue of jobs.
    assert_eq!(
        launches(&mut executor),
        vec![(a1.0.clone(), 0, 0), (b1.0.clone(), 0, 0)]
    );
    succeed(&mut state, &a1, 0);
    assert_eq!(launches(&mut executor), vec![(a1.0.clone(), 1, 0)]);
    succeed(&mut state, &b1, 0);
    assert_eq!(launches(&mut executor), vec![(b1.0.clone(), 1, 0)]);
    // Within session a, job a2 waits for a1.
    succeed(&mut state, &a1, 1);
    assert_eq!(launches(&mut executor), vec![(a2.0.clone(), 0, 0)]);
    // Finished jobs are remembered up to faisca.driver.retainedJobs once their result was read.
    for job in [&a1, &a2, &b1] {
        state.receive(Message::JobDone { id: job.clone() });
    }
    let (reply, mut answer) = oneshot::channel();
    state.receive(Message::ListJobs { reply });
    let jobs = answer.try_recv().unwrap();
    let states: Vec<(String, i32)> = jobs.into_iter().map(|j| (j.job_id, j.state)).collect();
    // a2 and b1 were still running when their clients went away: cancelled; a1 succeeded, was
    // retired first and fell out of the two remembered jobs.
    assert_eq!(
        states,
        vec![
            (a2.0.clone(), faisca_proto::JobState::Cancelled as i32),
            (b1.0.clone(), faisca_proto::JobState::Cancelled as i32),
        ]
    );
    assert!(state.jobs.is_empty());
    // The executor was told to stop the cancelled tasks and drop every job's data.
    let mut cancels = 0;
    let mut removes = 0;
    while let Ok(Ok(message)) = executor.try_recv() {
        match message.message {
            Some(driver_message::Message::CancelTask(_)) => cancels += 1,
            Some(driver_message::Message::RemoveJob(_)) => removes += 1,
            _ => {}
        }
    }
    assert_eq!((cancels, removes), (2, 3));
}

fn settings() -> DriverSettings {
    DriverSettings {
        heartbeat_timeout: Duration::from_secs(10),
        retained_jobs: 10,
        retained_task_failures: 20,
        executor_instances: 0,
        ..DriverSettings::from_config(&faisca_common::FaiscaConfig::default())
    }
}

fn cluster_info(state: &mut DriverState) -> ClusterInfoResponse {
    let (reply, mut answer) = oneshot::channel();
    state.receive(Message::ClusterInfo {
        min_executors: 0,
        reply,
    });
    answer.try_recv().unwrap()
}

fn executor_states(state: &mut DriverState) -> Vec<(String, String)> {
    cluster_info(state)
        .executors
        .into_iter()
        .map(|e| (e.executor_id, e.state))
        .collect()
}

/// Whether the executor was told it may go.
fn released(receiver: &mut mpsc::UnboundedReceiver<Result<DriverMessage, tonic::Status>>) -> bool {
    let mut released = false;
    while let Ok(Ok(message)) = receiver.try_recv() {
        released |= matches!(message.message, Some(driver_message::Message::Release(_)));
    }
    released
}

#[test]
fn a_decommissioning_executor_gets_no_tasks_and_is_released_once_its_output_was_read() {
    let mut state = DriverState::new(settings());
    let s = session(&mut state);
    let mut e = register_with_cores(&mut state, "e", 1);
    let mut f = register_with_cores(&mut state, "f", 1);
    let first = submit(&mut state, &s, 2);
    assert_eq!(launches(&mut e).len() + launches(&mut f).len(), 2);
    state.receive(Message::ExecutorDecommissioning {
        id: ExecutorId("f".into()),
        reason: "SIGTERM".into(),
    });
    assert_eq!(
        executor_states(&mut state),
        vec![
            ("e".to_string(), "active".to_string()),
            ("f".to_string(), "decommissioning".to_string())
        ]
    );
    // Its running task finishes; the job's result is on it and not read yet.
    succeed_on(&mut state, "e", &first, 0);
    succeed_on(&mut state, "f", &first, 1);
    assert!(!released(&mut f));
    // A new job's tasks all go to e.
    let second = submit(&mut state, &s, 2);
    assert_eq!(launches(&mut e), vec![(second.0.clone(), 0, 0)]);
    assert!(launches(&mut f).is_empty());
    // The client read the first job's result: f may go.
    state.receive(Message::JobDone { id: first });
    assert!(released(&mut f));
    state.receive(Message::ExecutorLost {
        id: ExecutorId("f".into()),
        reason: "stream closed".into(),
    });
    assert_eq!(
        executor_states(&mut state),
        vec![("e".to_string(), "active".to_string())]
    );
    succeed_on(&mut state, "e", &second, 0);
    assert_eq!(launches(&mut e), vec![(second.0.clone(), 1, 0)]);
}

#[test]
fn an_executor_leaving_when_its_grace_period_ends_hands_its_tasks_back_without_a_failure() {
    let mut state = DriverState::new(settings());
    let s = session(&mut state);
    let mut e = register_with_cores(&mut state, "e", 1);
    let mut f = register_with_cores(&mut state, "f", 1);
    let job = submit(&mut state, &s, 2);
    let on_f = launches(&mut f);
    assert_eq!(on_f.len(), 1);
    launches(&mut e);
    state.receive(Message::ExecutorDecommissioning {
        id: ExecutorId("f".into()),
        reason: "SIGTERM".into(),
    });
    // The grace period ended with f's task still running: f leaves.
    state.receive(Message::ExecutorLost {
        id: ExecutorId("f".into()),
        reason: "stream closed".into(),
    });
    let partition = on_f[0].1;
    succeed_on(&mut state, "e", &job, 1 - partition);
    // f's task runs again on e, as attempt 1, and nothing counts as failed.
    assert_eq!(launches(&mut e), vec![(job.0.clone(), partition, 1)]);
    let info = state.job_info(&job).unwrap();
    assert_eq!(info.stages[0].failed_attempts, 0);
    assert!(info.failures.is_empty());
}

fn departed(state: &mut DriverState) -> Vec<(String, String, String)> {
    cluster_info(state)
        .departed
        .into_iter()
        .map(|e| (e.executor_id, e.state, e.reason))
        .collect()
}

fn launcher_says(state: &mut DriverState, id: &str, reason: &str, expected: bool) {
    state.receive(Message::Launcher(
        crate::launcher::LauncherEvent::ExecutorExited {
            id: ExecutorId(id.into()),
            reason: reason.into(),
            expected,
        },
    ));
}

#[test]
fn a_launchers_reason_reaches_the_departed_executors() {
    let mut state = DriverState::new(settings());
    let _a = register(&mut state, "a");
    let _b = register(&mut state, "b");
    // The stream closes first; the pod's reason follows and is added.
    state.receive(Message::ExecutorLost {
        id: ExecutorId("a".into()),
        reason: "stream closed".into(),
    });
    launcher_says(
        &mut state,
        "a",
        "pod a failed: OOMKilled (exit code 137)",
        false,
    );
    // The launcher is first: the executor is dropped at once, with the launcher's reason.
    launcher_says(&mut state, "b", "pod b deleted", false);
    // One that never registered is remembered too.
    launcher_says(
        &mut state,
        "c",
        "pod c cannot start: ImagePullBackOff",
        false,
    );
    assert_eq!(executors(&mut state), Vec::<String>::new());
    let gone = departed(&mut state);
    assert_eq!(gone.len(), 3, "{gone:?}");
    assert_eq!(
        (gone[0].0.as_str(), gone[0].1.as_str()),
        ("a", "lost"),
        "{gone:?}"
    );
    assert!(
        gone[0].2.contains("OOMKilled") && gone[0].2.contains("stream closed"),
        "{gone:?}"
    );
    assert_eq!(
        (gone[1].1.as_str(), gone[1].2.as_str()),
        ("lost", "pod b deleted")
    );
    assert_eq!(gone[2].0, "c");
    assert!(gone[2].2.contains("before it registered"), "{gone:?}");
    // An expected end (released, scaled down) is an exit, not a loss.
    let _d = register(&mut state, "d");
    launcher_says(&mut state, "d", "exit status: 0", true);
    assert_eq!(departed(&mut state)[3].1, "exited");
}

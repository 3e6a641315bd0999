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
    let (reply, mut answer) = oneshot::channel();
    state.receive(Message::ClusterInfo {
        min_executors: 0,
        reply,
    });
    answer
        .try_recv()
        .unwrap()
        .into_iter()
        .map(|e| e.executor_id)
        .collect()
}

#[test]
fn silent_executors_are_dropped_and_their_stream_closed() {
    let mut state = DriverState::new(DriverSettings {
        heartbeat_timeout: Duration::from_secs(10),
        retained_jobs: 10,
        retained_task_failures: 20,
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
        reply,
    });
    answer.try_recv().unwrap().unwrap()
}

fn submit(state: &mut DriverState, session: &SessionId, tasks: u32) -> JobId {
    let planned = PlannedJob {
        session: session.clone(),
        stages: vec![crate::scheduler::PlannedStage {
            id: 0,
            plan: bytes::Bytes::new(),
            hash_partitioned: false,
            output_partitions: 1,
            tasks,
            inputs: vec![],
            output_description: "result".into(),
        }],
        schema: Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        task_config: Arc::new(vec![]),
        max_attempts: 4,
        stage_max_attempts: 4,
        name: String::new(),
        sql: String::new(),
        write: None,
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
    state.receive(Message::TaskStatus {
        executor: ExecutorId("e".into()),
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
        },
    });
}

#[test]
fn sessions_share_slots_and_jobs_of_one_session_run_in_order() {
    let mut state = DriverState::new(DriverSettings {
        heartbeat_timeout: Duration::from_secs(10),
        retained_jobs: 2,
        retained_task_failures: 20,
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

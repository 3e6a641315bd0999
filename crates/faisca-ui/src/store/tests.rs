use std::collections::BTreeMap;

use super::*;
use crate::events::{ExecutorAdded, JobEnd, JobOutcome, JobStart, StagePlan, TaskEnd, TaskStart};

fn plan(stage: u32, tasks: u32, inputs: Vec<u32>) -> StagePlan {
    StagePlan {
        stage,
        tasks,
        inputs,
        output: if stage == 0 {
            "hash(2)".into()
        } else {
            "result".into()
        },
        operators: "AggregateExec\n  DataSourceExec".into(),
    }
}

fn job_start(job: u64) -> Event {
    Event::JobStart(JobStart {
        job,
        job_uuid: format!("uuid-{job}"),
        name: String::new(),
        description: "SELECT …".into(),
        session: "s".into(),
        user: String::new(),
        time: 1000 + job,
        stages: vec![plan(0, 2, vec![]), plan(1, 1, vec![0])],
    })
}

fn start(job: u64, stage: u32, partition: u32, attempt: u32) -> Event {
    Event::TaskStart(TaskStart {
        job,
        stage,
        partition,
        attempt,
        executor: "e1".into(),
        time: 2000,
    })
}

fn end(job: u64, stage: u32, partition: u32, attempt: u32, outcome: TaskOutcome) -> Event {
    Event::TaskEnd(TaskEnd {
        job,
        stage,
        partition,
        attempt,
        executor: "e1".into(),
        time: 2100,
        outcome,
        duration_ms: 90.0,
        rows_written: 10,
        bytes_written: 100,
        metrics: BTreeMap::from([("kafka.recordsRead".to_string(), 3)]),
        error: if outcome == TaskOutcome::Failed {
            "boom".into()
        } else {
            String::new()
        },
    })
}

fn run_job(store: &mut AppStore, job: u64) {
    store.apply(&job_start(job));
    for p in 0..2 {
        store.apply(&start(job, 0, p, 0));
        store.apply(&end(job, 0, p, 0, TaskOutcome::Success));
    }
    store.apply(&start(job, 1, 0, 0));
    store.apply(&end(job, 1, 0, 0, TaskOutcome::Success));
    store.apply(&Event::JobEnd(JobEnd {
        job,
        time: 3000,
        outcome: JobOutcome::Succeeded,
        error: String::new(),
    }));
}

#[test]
fn a_job_runs_through_its_stages() {
    let mut store = AppStore::default();
    store.apply(&Event::ExecutorAdded(ExecutorAdded {
        id: "e1".into(),
        address: "127.0.0.1:1".into(),
        cores: 2,
        memory_bytes: 1 << 30,
        time: 1,
    }));
    store.apply(&job_start(0));
    assert_eq!(store.jobs[&0].stage_ids, vec![0, 1]);
    assert_eq!(store.waiting_tasks(), 2, "the map stage is ready");
    store.apply(&start(0, 0, 0, 0));
    store.apply(&end(0, 0, 0, 0, TaskOutcome::Failed));
    assert_eq!(store.stages[&0].status, StageStatus::Active);
    assert_eq!(store.stages[&0].failure_reason, "boom");
    assert_eq!(store.waiting_tasks(), 2);
    store.apply(&start(0, 0, 0, 1));
    store.apply(&start(0, 0, 1, 0));
    assert_eq!(store.waiting_tasks(), 0);
    store.apply(&end(0, 0, 0, 1, TaskOutcome::Success));
    store.apply(&end(0, 0, 1, 0, TaskOutcome::Success));
    assert_eq!(store.stages[&0].status, StageStatus::Complete);
    assert_eq!(store.stages[&0].totals.rows_written, 20);
    assert_eq!(store.stages[&0].totals.metrics["kafka.recordsRead"], 6);
    assert_eq!(store.waiting_tasks(), 1, "the result stage is ready");
    store.apply(&start(0, 1, 0, 0));
    store.apply(&end(0, 1, 0, 0, TaskOutcome::Success));
    store.apply(&Event::JobEnd(JobEnd {
        job: 0,
        time: 3000,
        outcome: JobOutcome::Succeeded,
        error: String::new(),
    }));
    let job = &store.jobs[&0];
    assert_eq!(job.status(), JobStatus::Succeeded);
    assert_eq!(
        job.tasks,
        TaskCounts {
            active: 0,
            completed: 3,
            failed: 1,
            killed: 0
        }
    );
    assert_eq!(store.executors["e1"].tasks.completed, 3);
    assert_eq!(store.counters.tasks_started, 4);
    assert_eq!(store.counters.tasks_succeeded, 3);
    assert_eq!(store.counters.task_metrics["kafka.recordsRead"], 9);
    // Task ids follow launch order.
    let ids: Vec<u64> = store.stages[&0]
        .attempts
        .values()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(ids, vec![0, 1, 2]);
}

#[test]
fn a_failed_job_fails_its_active_stages_and_skips_the_rest() {
    let mut store = AppStore::default();
    store.apply(&job_start(0));
    store.apply(&start(0, 0, 0, 0));
    store.apply(&Event::JobEnd(JobEnd {
        job: 0,
        time: 3000,
        outcome: JobOutcome::Failed,
        error: "cancelled".into(),
    }));
    assert_eq!(store.stages[&0].status, StageStatus::Failed);
    assert_eq!(store.stages[&0].failure_reason, "cancelled");
    assert_eq!(store.stages[&1].status, StageStatus::Skipped);
    assert_eq!(store.counters.jobs_failed, 1);
    assert_eq!(store.counters.stages_failed, 1);
}

#[test]
fn retention_limits_hold_and_counters_stay_exact() {
    let limits = StoreLimits {
        jobs: 3,
        stages: 4,
        tasks: 1,
        dead_executors: 1,
        ended_queries: 1,
    };
    let mut store = AppStore::new(limits);
    for job in 0..50 {
        run_job(&mut store, job);
    }
    assert_eq!(
        store.jobs.keys().copied().collect::<Vec<_>>(),
        vec![47, 48, 49]
    );
    assert!(
        store.stages.len() <= 4,
        "{} stages kept",
        store.stages.len()
    );
    assert!(store.stages.values().all(|s| s.attempts.len() <= 1));
    assert_eq!(store.counters.tasks_succeeded, 150);
    assert_eq!(store.counters.jobs_succeeded, 50);
    // Stage ids keep counting across forgotten jobs.
    assert_eq!(store.jobs[&49].stage_ids, vec![98, 99]);
}

#[test]
fn events_for_forgotten_or_unknown_jobs_are_ignored() {
    let mut store = AppStore::default();
    store.apply(&start(7, 0, 0, 0));
    store.apply(&end(7, 0, 0, 0, TaskOutcome::Success));
    store.apply(&Event::JobEnd(JobEnd {
        job: 7,
        time: 1,
        outcome: JobOutcome::Succeeded,
        error: String::new(),
    }));
    assert!(store.jobs.is_empty());
    assert_eq!(store.counters.tasks_succeeded, 1);
}

#[test]
fn a_user_sees_their_own_jobs_stages_and_queries_only() {
    let mut store = AppStore::new(StoreLimits::default());
    for (job, user) in [(0, "alice"), (1, "bob"), (2, "")] {
        let Event::JobStart(mut start) = job_start(job) else {
            unreachable!()
        };
        start.user = user.to_string();
        store.apply(&Event::JobStart(start));
    }
    for (run, user) in [("r1", "alice"), ("r2", "bob")] {
        store.apply(&Event::Query(crate::events::QueryEvent::Started {
            id: format!("q-{run}"),
            run_id: run.to_string(),
            name: String::new(),
            sink: "memory".into(),
            user: user.to_string(),
            time: 1,
        }));
    }
    let alice = store.visible_to("alice");
    assert_eq!(alice.jobs.keys().copied().collect::<Vec<_>>(), [0]);
    assert!(alice.stages.values().all(|s| s.job == 0));
    assert!(!alice.stages.is_empty());
    assert_eq!(alice.queries.keys().collect::<Vec<_>>(), ["r1"]);
    assert!(store.visible_to("carol").jobs.is_empty());
    assert_eq!(store.jobs.len(), 3);
}

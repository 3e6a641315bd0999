//! Faísca's integration tests: one test binary, real processes and real gRPC on 127.0.0.1.
//!
//! * [`tpch`]: the 22 TPC-H queries on `local[3]` against single-process DataFusion.
//! * [`dataframe`]: the DataFrame API against the same queries in SQL.
//! * [`cli`]: `faisca driver` + `faisca executor` processes, queried with `faisca sql --format csv`.
//! * [`deploy`]: what the Dockerfile promises (user, entrypoint, labels, linked libraries).
//! * [`splits`]: task sizing of real Parquet scans.
//! * [`errors`]: bad input gives clear errors and non-zero exit codes.
//! * [`udf`]: user-defined functions on the cluster, and an executor that lacks one.
//! * [`s3`]: Parquet on a real S3-compatible server (moto), Hive partitions, AWS_* environment.
//! * [`writes`]: DataFrame writers, `COPY`, `INSERT INTO`, save modes, the commit protocol under
//!   faults, on local files and on S3.
//! * [`kafka`]: the Kafka source on real brokers (noida-db, Tansu) and librdkafka's mock cluster;
//!   Avro values framed for a schema registry ([`schema_registry`]: a minimal one, as none runs here).
//! * [`kafka_security`]: SASL/SCRAM logins to a Tansu broker that checks them (Spark's JAAS
//!   option, passwords from files, refusals naming the user), on the source and the sink, also
//!   inside mutual TLS to an endpoint of the test's in front of Tansu; advertised brokers
//!   outside the allowed locations.
//! * [`kafka_sink`]: Kafka writes (`format("kafka")`, `COPY … STORED AS KAFKA`, `INSERT INTO`),
//!   Kafka → Kafka incremental runs, topics read as tables.
//! * [`secrets`]: credentials never reach checkpoints, logs, `faisca status`, `EXPLAIN` or errors.
//! * [`fusion`]: fused pipelines next to DataFusion's operators in one query.
//! * [`health`]: the driver's and executor's `/healthz` and `/readyz` through start-up.
//! * [`faults`]: injected task failures, executors killed mid-query, cancellation, many jobs.
//! * [`launcher`]: `faisca driver --executors N` starts, replaces and stops its executor processes.
//! * [`kubernetes`]: `faisca driver --master k8s://…` runs its executors as pods of a Kubernetes
//!   API server written for the tests (`faisca-kube-standin`), whose kubelet stand-in runs the
//!   real executor processes: replacement, dynamic allocation, bad settings, `--dry-run`,
//!   cluster-mode submission.
//! * [`decommission`]: an executor given SIGTERM mid-query leaves without a re-run (or, past its
//!   grace period, with the re-runs needed), and the answer stays right.
//! * [`correctness`]: one case per class of query that once gave a wrong answer distributed.
//! * [`difftest`]: random tables and queries, distributed against single-process DataFusion.
//! * [`layering`]: crates depend only on what `docs/architecture.md`'s crate table allows.
//! * [`tls`]: TLS on every port, mutual TLS, certificate rotation; [`auth`]: the cluster secret
//!   and user tokens.
//! * [`hostile`]: decoders of outside bytes fed a corpus, mutations and random input, for a
//!   bounded time: none panics.

mod auth;
mod cli;
mod common;
mod correctness;
mod dataframe;
mod decommission;
mod deploy;
mod difftest;
mod errors;
mod faults;
mod fusion;
mod health;
mod hostile;
mod kafka;
mod kafka_brokers;
mod kafka_security;
mod kafka_sink;
mod kubernetes;
mod launcher;
mod layering;
mod readme;
mod s3;
mod schema_registry;
mod secrets;
mod splits;
mod streaming;
mod tls;
mod tpch;
mod udf;
mod ui;
mod writes;

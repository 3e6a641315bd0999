//! TPC-H: data generated in-process (tpchgen), and the 22 queries.

pub mod data;
pub mod queries;

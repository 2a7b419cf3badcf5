//! Native PostgreSQL beside tidelake in a benchmark: the test suite's
//! (`tidelake_tests::native`).

pub(crate) use tidelake_tests::native::{NativePg, chown_postgres, run_ok};

//! What the tests of the weft crate and of the CNI plugin share: [`netlab`], a cluster of
//! network namespaces with real routers. Test-only: it panics on a failed setup, which is a
//! failed test.

pub mod netlab;

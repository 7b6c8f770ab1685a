//! `shoal-client`: an async, cluster-aware client for shoal.

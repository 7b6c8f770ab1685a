//! `shoal-cluster-tests`: runs real `shoal-server` processes and attacks them.

//! Shared set-up for the end-to-end tests: network namespaces with a tap, cleaned up on drop.

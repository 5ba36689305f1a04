//! One integration-test binary (as ripgrep and cargo do): a module per topic, shared helpers in
//! the `*_support` modules. One binary links the crate once instead of once per topic.

mod bundle_support;
mod chromium_support;
mod json_support;
mod mirror_support;
mod reader_support;
mod repo_support;
mod sync_support;

mod adversarial;
mod bundle_attacks;
mod bundle_create;
mod bundle_throughput;
mod bundle_vector;
mod cli_foundation;
mod cli_install;
mod demo;
mod file_modes;
mod index_encoding;
mod index_incremental;
mod index_rules;
mod index_vectors;
mod json_output;
mod keys_minisign;
mod mirror_attacks;
mod mirror_browser;
mod mirror_http;
mod mirror_ops;
mod mirror_push;
mod pages_chromium;
mod push_client;
mod reader_attacks;
mod reader_page;
mod reader_race;
mod reader_state;
mod reader_transport;
mod repo_http;
mod repo_kill;
mod repo_publish;
mod static_nginx;
mod sync_cli;
mod sync_crash;
mod sync_lies;
mod sync_mesh;
mod sync_resume;
mod sync_timeouts;

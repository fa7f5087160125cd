//! The command line: `serve` (the default), `admin …` for ops, `client …` to call any subject.

pub mod admin;
pub mod client;
pub mod config_check;
pub mod nats_identity;
pub mod vault;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "oneclick",
    version,
    about = "One Click card-on-file payments over NATS"
)]
pub struct Cli {
    /// Settings file (default: config/base.toml + config/$ONECLICK_ENV.toml + ONECLICK__* env).
    #[arg(long, global = true, env = "ONECLICK_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service until SIGTERM or Ctrl-C.
    Serve,
    /// Operations: migrations, merchants, unions, keys.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Call oneclick over NATS as a gateway or merchant would, printing the JSON reply.
    Client(client::ClientArgs),
    /// Run the DEMONSTRATION payment page (`[demo]`, off by default; docs/demo-page.md): a
    /// gateway's page over NATS for the simulator's test cards.
    DemoPage,
}

//! `oneclick client …`: placeholder, being written.

use clap::Args;

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct ClientArgs {}

pub fn run(_settings: &Settings, _args: ClientArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}

//! One module per scenario (numbers as in issue 6 and docs/reliability.md).

mod card_sweep;
mod durable_load;
mod fuzz;
mod interactive;
mod key_rotation;
mod login_storm;
mod merchant_retries;
mod nats_node_loss;
mod red_team;
mod rolling_restart;
mod tenant_isolation;
mod two_instances;

use crate::report::Report;
use crate::Run;

pub const ALL: &[&str] = &[
    "kill-oneclick",
    "restart-nats",
    "restart-postgres",
    "two-instances",
    "slow-handler",
    "merchant-retries",
    "card-sweep",
    "key-rotation",
    "tenant-isolation",
    "fuzz",
    "red-team",
    "login-storm",
    "nats-node-loss",
    "rolling-restart",
];

pub async fn run(name: &str, run: &Run, report: &mut Report) -> anyhow::Result<()> {
    match name {
        "kill-oneclick" => durable_load::run(durable_load::Fault::KillOneclick, run, report).await,
        "restart-nats" => durable_load::run(durable_load::Fault::RestartNats, run, report).await,
        "restart-postgres" => {
            durable_load::run(durable_load::Fault::RestartPostgres, run, report).await
        }
        "slow-handler" => durable_load::run(durable_load::Fault::SlowHandler, run, report).await,
        "two-instances" => two_instances::run(run, report).await,
        "merchant-retries" => merchant_retries::run(run, report).await,
        "card-sweep" => card_sweep::run(run, report).await,
        "key-rotation" => key_rotation::run(run, report).await,
        "tenant-isolation" => tenant_isolation::run(run, report).await,
        "fuzz" => fuzz::run(run, report),
        "red-team" => red_team::run(run, report).await,
        "login-storm" => login_storm::run(run, report).await,
        "nats-node-loss" => durable_load::run(durable_load::Fault::NatsNodeLoss, run, report).await,
        "rolling-restart" => {
            durable_load::run(durable_load::Fault::RollingRestart, run, report).await
        }
        other => anyhow::bail!("unknown scenario {other}; one of: {}", ALL.join(", ")),
    }
}

//! `oneclick`: a thin shell over the library (see `lib.rs`). Parses the command line, loads the
//! settings, and runs the service inside an actix System on a multi-threaded tokio runtime
//! (actix actors need a System; docs/stack.md).

use clap::Parser;

/// mimalloc instead of glibc's malloc: a cached customer is a few dozen small allocations
/// (actor, mailbox, registry slot, snapshot) and a payment a few hundred short-lived ones;
/// mimalloc's size classes carry no per-allocation header and its thread-local free lists
/// keep the allocator off the profile (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use oneclick::cli::{Cli, Command};
use oneclick::config::Settings;

fn main() -> std::process::ExitCode {
    // Before anything is read: settings, keys, card data (src/hardening.rs). Every command, not
    // only `serve`: the admin and client commands hold keys and card numbers too.
    let core_dumps = match oneclick::hardening::disable_core_dumps() {
        Ok(state) => state,
        Err(e) => {
            eprintln!("oneclick: cannot disable core dumps: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("oneclick: configuration error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let mut log = settings.log.clone();
    if !matches!(command, Command::Serve | Command::DemoPage) {
        // Tools print their result on stdout; only warnings belong on stderr.
        log.level = "warn".into();
    }
    oneclick::telemetry::init(&log);
    if matches!(command, Command::Serve) {
        tracing::info!(
            core_limit_soft = core_dumps.limit.0,
            core_limit_hard = core_dumps.limit.1,
            dumpable = ?core_dumps.dumpable,
            "core dumps disabled"
        );
    }
    let result = match command {
        Command::Serve => serve(settings),
        Command::Admin(cmd) => oneclick::cli::admin::run(&settings, cmd),
        Command::Client(args) => oneclick::cli::client::run(&settings, args),
        Command::DemoPage => demo_page(settings),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oneclick: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot build the tokio runtime: {e}"))
    });
    system.block_on(async move {
        let app = oneclick::app::Application::build(settings).await?;
        app.run_until_stopped(oneclick::shutdown_signal()).await
    })
}

/// `oneclick demo-page`: the demonstration payment page, a gateway over NATS (no actors, no
/// database, no keys: a plain tokio runtime).
fn demo_page(settings: Settings) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(oneclick::web::demo::run(
            settings,
            oneclick::shutdown_signal(),
        ))
}

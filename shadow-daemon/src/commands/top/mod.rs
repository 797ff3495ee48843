//! `shadowd top`: a live terminal view of a running `shadowd run`, read from its admin address
//! once a second: requests per second seen, mirrored and skipped, agreement and accuracy with
//! their intervals, p50/p99 and error rate per model, the breaker, capture drops and the last
//! discrepancies. Read-only (GETs only) and unprivileged.
//!
//! A fetcher thread polls `/metrics`, `/api/summary` and `/api/discrepancies` and hands each
//! [`state::Reading`] (or why there is none) to the drawing loop, which never waits on the
//! network: a slow or unreachable daemon is shown and retried, never fatal. `q`, Esc or Ctrl-C
//! quit and restore the terminal (also on a panic: ratatui's hook).

pub mod render;
pub mod state;

use super::admin_client::{self, DEFAULT_FROM};
use super::{CommandResult, EXIT_OK, UsageError};
use crate::security;
use crate::sinks::discrepancy_log::rfc3339;
use crate::sinks::recent_discrepancies::RecentDiscrepancy;
use anyhow::Context;
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use state::{Counters, Reading, SummaryView, TopState};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the daemon is read.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Discrepancies asked for (more than a tall terminal shows).
const DISCREPANCIES: usize = 50;
/// How long the drawing loop waits for a key before looking for a new reading.
const KEY_WAIT: Duration = Duration::from_millis(100);

/// Flags of `shadowd top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Admin address of the running `shadowd run` (its `admin.addr`), as an http:// URL
    /// [default: http://127.0.0.1:9464].
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// File holding the daemon's admin token (its `admin.token_file`), sent as
    /// `Authorization: Bearer`: needed when the daemon's admin address is not loopback.
    #[arg(long, value_name = "FILE", env = "SHADOWD_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// Runs `shadowd top` until `q`. Exit codes: 0 after `q`, 2 for bad flags or no terminal.
pub fn main(args: TopArgs) -> CommandResult {
    let from = args.from.unwrap_or_else(|| DEFAULT_FROM.to_owned());
    if !from.starts_with("http://") {
        return Err(UsageError(format!(
            "--from {from}: give the admin address as http://HOST:PORT"
        ))
        .into());
    }
    let token = args
        .token_file
        .as_deref()
        .map(security::read_token_secret)
        .transpose()?;
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(UsageError(
            "shadowd top draws on a terminal, and stdout is not one: run it in a terminal (for \
             machines, read /api/summary, /api/timeseries and /metrics instead)"
                .into(),
        )
        .into());
    }
    let readings =
        start_fetcher(from.clone(), token).context("cannot start the thread reading the daemon")?;
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            ratatui::restore();
            return Err(e).context("cannot take over the terminal");
        }
    };
    let result = draw_until_quit(&mut terminal, TopState::new(&from), &readings);
    ratatui::restore();
    result?;
    Ok(EXIT_OK)
}

/// Draws, applies new readings and reads keys until `q`, Esc or Ctrl-C.
fn draw_until_quit(
    terminal: &mut ratatui::DefaultTerminal,
    mut state: TopState,
    readings: &mpsc::Receiver<(Result<Reading, String>, Instant)>,
) -> anyhow::Result<()> {
    loop {
        terminal.draw(|f| render::render(&state, f))?;
        let mut changed = false;
        while !changed {
            if event::poll(KEY_WAIT)? {
                match event::read()? {
                    Event::Key(key) if key.kind != KeyEventKind::Release => {
                        let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                            && matches!(key.code, KeyCode::Char('c' | 'C'));
                        if ctrl_c || matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
                            return Ok(());
                        }
                    }
                    Event::Resize(..) => changed = true,
                    _ => {}
                }
            }
            while let Ok((poll, at)) = readings.try_recv() {
                state.update(poll, at, &clock_now());
                changed = true;
            }
        }
    }
}

/// `HH:MM:SS` UTC now.
fn clock_now() -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    rfc3339(ns).get(11..19).unwrap_or_default().to_owned()
}

/// A thread reading the daemon every [`REFRESH`]; it ends when the receiver is dropped.
fn start_fetcher(
    from: String,
    token: Option<String>,
) -> std::io::Result<mpsc::Receiver<(Result<Reading, String>, Instant)>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("shadowd-top-fetch".into())
        .spawn(move || {
            loop {
                let started = Instant::now();
                let poll = fetch(&from, token.as_deref()).map_err(|e| format!("{e:#}"));
                if tx.send((poll, Instant::now())).is_err() {
                    return;
                }
                std::thread::sleep(REFRESH.saturating_sub(started.elapsed()));
            }
        })?;
    Ok(rx)
}

/// One reading of the daemon's admin endpoints.
pub fn fetch(from: &str, token: Option<&str>) -> anyhow::Result<Reading> {
    let metrics = admin_client::get_ok(from, "/metrics", token)?;
    let summary = SummaryView::parse(&admin_client::get_ok(from, "/api/summary", token)?)?;
    // An older daemon has no such endpoint: no discrepancies shown, nothing else lost.
    let discrepancies = match admin_client::get(
        from,
        &format!("/api/discrepancies?limit={DISCREPANCIES}"),
        token,
    )? {
        (200, body) => serde_json::from_str::<Vec<RecentDiscrepancy>>(&body)
            .context("/api/discrepancies is not a list of discrepancies")?,
        _ => Vec::new(),
    };
    Ok(Reading {
        counters: Counters::parse(&metrics),
        summary,
        discrepancies,
    })
}

//! `posthorn`: the server and its admin command line.

/// A line on stdout from an admin command, `println!`'s arguments. An
/// error (a closed pipe: `posthorn queue list | head -2`) returns from the
/// function, and `main` ends quietly on a closed pipe instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// As [`out!`], without the newline.
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod admin;
mod api_cmds;
mod cli;
mod cluster;
mod config;
mod fdlimit;
mod lockout_cmds;
mod serve;
mod store_cmds;
mod stores;
mod template_cmds;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    keep_large_allocations_out_of_the_heap();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line that says what to fix.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                msg.push_str(": ");
                msg.push_str(&cause.to_string());
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the error is stdout's reader going away (`| head`): the reader
/// has what it wanted, so that is not a failure to report.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Allocations of 1 MiB and more get their own mapping, returned to the
/// system when freed. glibc otherwise raises that threshold after the first
/// such free (up to 32 MiB), so every argon2 check's 19 MiB buffer then
/// stays in a malloc heap: 20 logins left 240 MiB resident instead of 66.
fn keep_large_allocations_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

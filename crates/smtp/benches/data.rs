//! The session reading messages over a reused connection: MAIL, RCPT,
//! DATA and the content fed in 64 KiB reads, as a connection feeds it, up
//! to the stored copy handed out for submission. A 100 KB message of
//! 76-character lines (compare.sh's c) and a 5 KB one.
//!
//!     cargo bench -p posthorn-smtp --bench data

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use posthorn_smtp::{Event, Session, SessionConfig};
use posthorn_types::MessageId;

/// Dot-stuffed content of `len` bytes in lines of 76 characters, a few
/// starting with a dot, then the end marker.
fn content(len: usize) -> Vec<u8> {
    let mut out = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: load\r\n\r\n".to_vec();
    let mut n = 0u32;
    while out.len() < len {
        n += 1;
        if n.is_multiple_of(50) {
            out.extend_from_slice(b"..");
        }
        out.extend((0..74).map(|i| b'a' + ((i + n) % 26) as u8));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Runs the session until it needs input, answering every request yes;
/// returns the length of what it submitted, if it did.
fn run(session: &mut Session) -> Option<usize> {
    let mut submitted = None;
    loop {
        match session.step() {
            Event::NeedInput | Event::Close => break,
            Event::Mail(_) => session.mail_result(Ok(())),
            Event::Rcpt(_) => session.rcpt_result(Ok(())),
            Event::Submit { data, .. } => {
                submitted = Some(data.len());
                session.submit_result(Ok(MessageId::generate()));
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    session.clear_output();
    submitted
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("data");
    for (name, len) in [("100KB", 102_400), ("5KB", 5_120)] {
        let body = content(len);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            let mut session = Session::new(SessionConfig::default());
            // A trusted network, like compare.sh's c: no login.
            session.set_authenticated();
            session.feed(b"EHLO bench.test\r\n");
            run(&mut session);
            b.iter(|| {
                session.feed(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
                run(&mut session);
                let mut stored = None;
                for chunk in body.chunks(64 << 10) {
                    session.feed(chunk);
                    stored = stored.or(run(&mut session));
                }
                stored.expect("the message was submitted")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

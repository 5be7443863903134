//! Parse-and-check cost of the policy on a 5 KB message and on a 9 MB
//! message with attachments. Targets: ≤ 30 µs for the small one, ≥ 200 MB/s
//! for the large one. Also the pre-scan alone on both, and the refusal of
//! issue 17's message (80,000 RFC 2231 parameters in an attachment's
//! Content-Disposition, 1.6 MB; 10-13 s before the pre-scan).
//!
//!     cargo bench -p posthorn-policy --bench check

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use posthorn_policy::{check, prescan, rewrite_headers, HeaderEdits, PolicyLimits};

fn base64_wrapped(len: usize, seed: u8) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // Encode pseudo-random bytes properly so the content decodes.
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut out = String::with_capacity(len * 4 / 3 + len / 38);
    let mut line = 0;
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= n {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
        line += 4;
        if line == 76 {
            out.push_str("\r\n");
            line = 0;
        }
    }
    out.push_str("\r\n");
    out
}

fn small_message() -> Vec<u8> {
    let mut m = String::from(
        "From: \"Shop\" <app@example.com>\r\nTo: customer@example.net\r\nSubject: Your order #1234\r\nMessage-ID: <a1@example.com>\r\nDate: Mon, 23 Nov 2026 13:08:50 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    for i in 0..30 {
        m.push_str(&format!(
            "Line {i} of your receipt: item, quantity, price, tax, total.\r\n"
        ));
    }
    m.push_str("--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>");
    while m.len() < 5000 {
        m.push_str("<p>Thank you for your order. Item, quantity, price.</p>\r\n");
    }
    m.push_str("</body></html>\r\n--alt--\r\n");
    m.into_bytes()
}

fn large_message() -> Vec<u8> {
    let mut m = String::from(
        "From: app@example.com\r\nTo: customer@example.net\r\nSubject: Reports\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain\r\n\r\nThe reports are attached.\r\n",
    );
    for (i, size) in [3_000_000, 2_500_000, 1_200_000].iter().enumerate() {
        m.push_str(&format!(
            "--mix\r\nContent-Type: application/pdf; name=\"report-{i}.pdf\"\r\nContent-Disposition: attachment; filename=\"report-{i}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ));
        m.push_str(&base64_wrapped(*size, i as u8));
    }
    m.push_str("--mix--\r\n");
    m.into_bytes()
}

/// One text part as sent, no transfer encoding: what most transactional
/// mail is (posthorn-loadgen writes `charset=us-ascii`, smtp-source no
/// Content-Type at all).
fn single_part_message(len: usize, content_type: &str) -> Vec<u8> {
    let mut m = format!(
        "From: app@example.com\r\nTo: customer@example.net\r\nSubject: Your code\r\nMessage-ID: <s1@example.com>\r\nDate: Mon, 23 Nov 2026 13:08:50 +0000\r\nMIME-Version: 1.0\r\n{content_type}\r\n"
    );
    while m.len() < len {
        m.push_str("Your sign-up code is 123456. It expires in ten minutes.\r\n");
    }
    m.into_bytes()
}

/// Issue 17's message: `p0*0*=utf-8''a; p1*1*=utf-8''a; …` in an
/// attachment's Content-Disposition, folded under 2,000 bytes a line.
fn rfc2231_bomb(n: usize) -> Vec<u8> {
    let mut params = String::new();
    let mut line = 32;
    for i in 0..n {
        let p = format!("p{i}*{}*=utf-8''a;", i % 2);
        if line + p.len() + 1 > 1990 {
            params.push_str("\r\n ");
            line = 1;
        } else {
            params.push(' ');
            line += 1;
        }
        params.push_str(&p);
        line += p.len();
    }
    format!(
        "From: app@example.com\r\nTo: customer@example.net\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nhi\r\n--BB\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;{params}\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--BB--\r\n"
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let limits = PolicyLimits::default();
    let small = small_message();
    let large = large_message();
    check(&small, "app@example.com", &limits).expect("small passes");
    let facts = check(&large, "app@example.com", &limits).expect("large passes");
    assert_eq!(facts.attachments.len(), 3);

    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Bytes(small.len() as u64));
    group.bench_function("check 5 KB", |b| {
        b.iter(|| check(&small, "app@example.com", &limits).unwrap())
    });
    group.bench_function("check + headers 5 KB", |b| {
        b.iter(|| {
            check(&small, "app@example.com", &limits).unwrap();
            rewrite_headers(
                &small,
                &HeaderEdits {
                    received: Some(
                        "Received: from x ([127.0.0.1])\r\n\tby y (Posthorn) with ESMTPSA; date",
                    ),
                    add_if_missing: &[("Message-ID", "<x@y>"), ("Date", "now")],
                    remove: &["Bcc"],
                },
            )
        })
    });
    group.bench_function("prescan 5 KB", |b| b.iter(|| prescan(&small).1.unwrap()));
    let single = single_part_message(
        5 * 1024,
        "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n",
    );
    group.bench_function("check 5 KB, one us-ascii part", |b| {
        b.iter(|| check(&single, "app@example.com", &limits).unwrap())
    });
    let single_large = single_part_message(100 * 1024, "");
    group.throughput(Throughput::Bytes(single_large.len() as u64));
    group.bench_function("check 100 KB, one part", |b| {
        b.iter(|| check(&single_large, "app@example.com", &limits).unwrap())
    });
    group.throughput(Throughput::Bytes(small.len() as u64));
    let bomb = rfc2231_bomb(80_000);
    check(&bomb, "app@example.com", &limits).expect_err("the bomb is refused");
    group.throughput(Throughput::Bytes(bomb.len() as u64));
    group.bench_function("refuse 80,000 RFC 2231 parameters", |b| {
        b.iter(|| check(&bomb, "app@example.com", &limits).unwrap_err())
    });
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function(
        format!(
            "prescan {:.1} MB with 3 attachments",
            large.len() as f64 / 1e6
        ),
        |b| b.iter(|| prescan(&large).1.unwrap()),
    );
    group.sample_size(20);
    group.bench_function(
        format!(
            "check {:.1} MB with 3 attachments",
            large.len() as f64 / 1e6
        ),
        |b| {
            b.iter_batched(
                || (),
                |_| check(&large, "app@example.com", &limits).unwrap(),
                BatchSize::SmallInput,
            )
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Preparing a stored message for DATA: the signature field and the content
//! dot-stuffed into one buffer (`client::dot_stuff_parts`), for a 100 KB
//! message of 76-character lines and a 5 KB one.
//!
//!     cargo bench -p posthorn-delivery --bench dot_stuff

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use posthorn_delivery::client::dot_stuff_parts;

fn content(len: usize) -> Vec<u8> {
    let mut out = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: load\r\n\r\n".to_vec();
    let mut n = 0u32;
    while out.len() < len {
        n += 1;
        if n.is_multiple_of(50) {
            out.push(b'.');
        }
        out.extend((0..74).map(|i| b'a' + ((i + n) % 26) as u8));
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bench(c: &mut Criterion) {
    let signature = b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=bench.test;\r\n\
        \ts=s1; h=From:To:Subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\
        \tb=AAAA\r\n";
    let mut group = c.benchmark_group("dot_stuff");
    for (name, len) in [("100KB", 102_400), ("5KB", 5_120)] {
        let body = content(len);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| dot_stuff_parts(&[&signature[..], &body]).len())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Hostile input: every decoder of bytes an outside party controls is fed, for a bounded time,
//! a checked-in corpus (`tests/corpus/hostile/<harness>/`), valid encodings, mutations of both
//! (bit flips, cut and spliced bytes, interesting numbers), and random bytes. None may panic:
//! bad input gives an error. A panic fails the test with the input written under
//! `<target>/hostile-crashes/<harness>/`; such an input is then checked in to the corpus, where it
//! is replayed on every run (a regression test), and the bug fixed.
//!
//! Each harness runs `FAISCA_FUZZ_SECONDS` (default 2) of random inputs after the corpus;
//! `scripts/fuzz.sh` runs them longer. `FAISCA_FUZZ_SEED` repeats a run. Each runs in a child
//! process of the test binary with its address space limited (`FAISCA_FUZZ_MEMORY_KIB`, default
//! 8 GiB): an input that makes a decoder allocate without bound aborts the child, not the tests,
//! and the failure names the seed that finds it again.

mod harnesses;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A decoder under test: its name (its corpus directory), its test's path, the valid inputs
/// mutations start from, and what it does with one input.
pub struct Harness {
    pub name: &'static str,
    pub test: &'static str,
    pub seeds: fn() -> Vec<Vec<u8>>,
    pub run: fn(&[u8]),
}

/// A small, fast, seedable generator (xorshift64*): the inputs, not security.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `[0, n)` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Numbers that find edges: lengths, counts and varints at their limits.
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    u64::MAX,
    1 << 40,
];

/// One mutation of `input` (`others` may be spliced in).
pub fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(8) {
            // Flip a bit.
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            // Set a byte.
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            // Cut a range out.
            2 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(16)).min(out.len());
                out.drain(start..end);
            }
            // Insert random bytes.
            3 => {
                let at = rng.below(out.len() + 1);
                let len = 1 + rng.below(8);
                let bytes = rng.bytes(len);
                out.splice(at..at, bytes);
            }
            // Write an interesting number as a protobuf varint.
            4 => {
                let mut value = INTERESTING[rng.below(INTERESTING.len())];
                let mut varint = Vec::new();
                loop {
                    let byte = (value & 0x7f) as u8;
                    value >>= 7;
                    if value == 0 {
                        varint.push(byte);
                        break;
                    }
                    varint.push(byte | 0x80);
                }
                let at = rng.below(out.len() + 1);
                let end = (at + varint.len()).min(out.len());
                out.splice(at..end, varint);
            }
            // Cut the end off.
            5 if !out.is_empty() => {
                let len = rng.below(out.len());
                out.truncate(len);
            }
            // Splice in part of another input.
            6 if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = start + rng.below(other.len() - start) + 1;
                    let at = rng.below(out.len() + 1);
                    out.splice(at..at, other[start..end].iter().copied());
                }
            }
            // Duplicate a range (repeated fields, nested messages).
            _ if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let copy = out[start..end].to_vec();
                out.splice(end..end, copy);
            }
            _ => {}
        }
    }
    out
}

fn corpus_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus/hostile")
        .join(name)
}

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(corpus_dir(name)) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Run `input` through `harness`; a panic fails the test with the input saved.
fn check(harness: &Harness, input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| (harness.run)(input))).is_err() {
        let dir = crate::common::faisca_bin()
            .parent()
            .unwrap()
            .join("hostile-crashes")
            .join(harness.name);
        std::fs::create_dir_all(&dir).unwrap();
        let hash = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let path = dir.join(format!("{hash:016x}"));
        std::fs::write(&path, input).unwrap();
        panic!(
            "{} panicked on {what} ({} bytes), saved as {}: check it in under {}",
            harness.name,
            input.len(),
            path.display(),
            corpus_dir(harness.name).display()
        );
    }
}

fn seconds() -> Duration {
    let secs: f64 = std::env::var("FAISCA_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

/// Run `harness` in a child process of this test binary (see the module docs); panics with the
/// child's last output when it fails.
pub fn fuzz(harness: &Harness) {
    if std::env::var_os(CHILD).is_some() {
        let runs = fuzz_here(harness);
        eprintln!("{}: {runs} generated inputs", harness.name);
        return;
    }
    let seed = std::env::var("FAISCA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let memory_kib: u64 = std::env::var("FAISCA_FUZZ_MEMORY_KIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8 << 20);
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {memory_kib} && exec \"$0\" \"$@\""))
        .arg(std::env::current_exe().unwrap())
        .args([harness.test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("FAISCA_FUZZ_SEED", seed.to_string())
        .output()
        .expect("run the harness's child process");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let ran = text.contains(&format!("{}: ", harness.name)) && text.contains("generated inputs");
    let shown: Vec<&str> = text
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("at ") && !l.contains(": std::") && !l.contains(": core::")
        })
        .collect();
    // The end says why the child stopped (an abort's message comes last).
    let tail = &shown[shown.len().saturating_sub(80)..];
    assert!(
        output.status.success() && ran,
        "{} failed ({}; FAISCA_FUZZ_SEED={seed} finds it again):\n{}",
        harness.name,
        output.status,
        tail.join("\n")
    );
}

/// Set in a harness's child process.
const CHILD: &str = "FAISCA_HOSTILE_CHILD";

/// Replay the harness's corpus and seeds, then mutate and generate inputs until its time is up.
/// Returns how many inputs ran.
fn fuzz_here(harness: &Harness) -> u64 {
    let corpus = corpus(harness.name);
    for (file, input) in &corpus {
        check(harness, input, &format!("corpus entry {file}"));
    }
    let mut bases: Vec<Vec<u8>> = (harness.seeds)();
    for (i, seed) in bases.iter().enumerate() {
        check(harness, seed, &format!("seed {i}"));
    }
    bases.extend(corpus.into_iter().map(|(_, input)| input));
    let seed: u64 = std::env::var("FAISCA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + seconds();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let input = if bases.is_empty() || rng.below(8) == 0 {
            let len = rng.below(64);
            rng.bytes(len)
        } else {
            let base = &bases[rng.below(bases.len())];
            mutate(&mut rng, base, &bases)
        };
        check(
            harness,
            &input,
            &format!("a generated input (FAISCA_FUZZ_SEED={seed})"),
        );
        runs += 1;
    }
    runs
}

#[test]
fn mutations_stay_in_bounds_and_change_inputs() {
    let mut rng = Rng::new(7);
    let base = vec![1u8, 2, 3, 4, 5, 6, 7, 8];
    let mut changed = 0;
    for _ in 0..1000 {
        let out = mutate(&mut rng, &base, std::slice::from_ref(&base));
        changed += usize::from(out != base);
        let _ = mutate(&mut rng, &[], &[]);
    }
    assert!(changed > 900, "{changed}");
}

//! Content-defined chunking: FastCDC (2020) with the repository's secret seed, over any reader.

use std::io::Read;

use fastcdc::v2020::{Normalization, StreamCDC};

use super::format::ChunkerParams;

/// Splits a byte stream into content-defined chunks.
pub struct Chunker<R: Read> {
    inner: StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, params: &ChunkerParams, seed: u64) -> Self {
        Self {
            inner: StreamCDC::with_level_and_seed(
                reader,
                params.min_size as usize,
                params.avg_size as usize,
                params.max_size as usize,
                Normalization::Level1,
                seed,
            ),
        }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.next()? {
            Ok(chunk) => Some(Ok(chunk.data)),
            Err(fastcdc::v2020::Error::IoError(e)) => Some(Err(e)),
            Err(fastcdc::v2020::Error::Empty) => None,
            Err(fastcdc::v2020::Error::Other(msg)) => Some(Err(std::io::Error::other(msg))),
        }
    }
}

/// Splits a byte stream into chunks of one fixed size (the last one shorter): for files whose bytes
/// never move, like PostgreSQL's page files, where content-defined cuts buy nothing and cost a scan,
/// and where chunk `k` of one backup is chunk `k` of the next.
pub struct FixedChunker<R: Read> {
    reader: R,
    size: usize,
    done: bool,
}

impl<R: Read> FixedChunker<R> {
    pub fn new(reader: R, size: usize) -> Self {
        Self {
            reader,
            size: size.max(1),
            done: false,
        }
    }
}

impl<R: Read> Iterator for FixedChunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = vec![0u8; self.size];
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        if filled < buf.len() {
            self.done = true;
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
        }
        Some(Ok(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SMALL: ChunkerParams = ChunkerParams {
        algorithm: super::super::format::FastCdcName::FastCdc2020,
        min_size: 1024,
        avg_size: 4096,
        max_size: 16384,
    };

    fn chunks(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
        Chunker::new(data, &SMALL, seed)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    proptest! {
        #[test]
        fn fixed_chunks_concatenate_to_the_input(len in 0usize..50_000, size in 1usize..9000) {
            let data = noise(len, 3);
            let parts: Vec<Vec<u8>> = FixedChunker::new(&data[..], size).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(parts.concat(), data);
            prop_assert_eq!(parts.len(), len.div_ceil(size));
            if let Some((_last, rest)) = parts.split_last() {
                prop_assert!(rest.iter().all(|p| p.len() == size));
            }
        }
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_the_input_within_bounds(len in 0usize..200_000, s in any::<u64>()) {
            let data = noise(len, s);
            let parts = chunks(&data, 7);
            prop_assert_eq!(parts.concat(), data);
            if let Some((_last, rest)) = parts.split_last() {
                for p in rest {
                    prop_assert!(p.len() >= 1024 && p.len() <= 16384, "size {}", p.len());
                }
            }
        }
    }

    #[test]
    fn a_local_edit_changes_only_nearby_chunks() {
        let mut data = noise(400_000, 3);
        let before = chunks(&data, 9);
        data[200_000] ^= 0xff;
        let after = chunks(&data, 9);
        let changed = after.iter().filter(|c| !before.contains(c)).count();
        assert!(before.len() > 50);
        assert!(changed <= 3, "{changed} chunks changed");
    }

    #[test]
    fn the_seed_moves_boundaries() {
        let data = noise(300_000, 5);
        let a: Vec<usize> = chunks(&data, 1).iter().map(Vec::len).collect();
        let b: Vec<usize> = chunks(&data, 0xdead_beef).iter().map(Vec::len).collect();
        assert_ne!(a, b);
    }
}

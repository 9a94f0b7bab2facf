//! A tar written by hand, for tests that need entries `tar::Builder` refuses to write (`..`, absolute paths, links
//! anywhere): the workspace ingestion's and the files-out reader's.

/// Builds a tar by hand so that tests can write entries `tar::Builder` refuses to (`..`, absolute paths).
pub(crate) struct RawTar(Vec<u8>);

impl RawTar {
    pub(crate) fn new() -> Self {
        Self(Vec::new())
    }

    /// A ustar header announcing `size` bytes (which a test may then not send).
    pub(crate) fn header(path: &str, kind: u8, link: &str, size: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    pub(crate) fn entry(mut self, path: &str, kind: u8, link: &str, data: &[u8]) -> Self {
        self.0.extend_from_slice(&Self::header(path, kind, link, data.len() as u64));
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0, pad));
        self
    }

    pub(crate) fn file(self, path: &str, data: &str) -> Self {
        self.entry(path, b'0', "", data.as_bytes())
    }

    pub(crate) fn done(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0, 1024));
        self.0
    }
}

//! Layer tars built entry by entry, with raw headers: the tar crate's
//! `set_path` refuses `..` and absolute paths, but hostile layers are exactly
//! those, so names are written into the header bytes directly (with a GNU
//! long-name entry when they do not fit in 100 bytes) and the checksum is set
//! afterwards. Then compressed as the layer's media type says.

use std::io::Write;

use tar::{EntryType, Header};

use super::sha256;

/// Every entry carries this time, so builds are reproducible within a run.
const MTIME: u64 = 1_767_225_600;

/// How a layer blob is encoded, and the OCI media type that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// A layer's uncompressed tar, built entry by entry.
#[derive(Default)]
pub struct TarBuilder {
    tar: Vec<u8>,
}

impl TarBuilder {
    pub fn new() -> TarBuilder {
        TarBuilder::default()
    }

    /// The one place entries are written: any name and link-name bytes, as
    /// they are, with GNU long-name/long-link entries when they are long.
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        device: Option<(u32, u32)>,
        data: &[u8],
    ) -> &mut Self {
        if name.len() > 100 {
            self.long(EntryType::GNULongName, name);
        }
        if link.len() > 100 {
            self.long(EntryType::GNULongLink, link);
        }
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        // Real tars write 0:0 in every entry's device fields, not NULs.
        let (major, minor) = device.unwrap_or((0, 0));
        h.set_device_major(major).expect("device major");
        h.set_device_minor(minor).expect("device minor");
        {
            let old = h.as_old_mut();
            let n = name.len().min(100);
            old.name[..n].copy_from_slice(&name[..n]);
            let l = link.len().min(100);
            old.linkname[..l].copy_from_slice(&link[..l]);
        }
        h.set_cksum();
        self.tar.extend_from_slice(h.as_bytes());
        self.data(data);
        self
    }

    /// A GNU `././@LongLink` entry holding the next entry's full name or link.
    fn long(&mut self, kind: EntryType, bytes: &[u8]) {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(bytes.len() as u64 + 1);
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_cksum();
        self.tar.extend_from_slice(h.as_bytes());
        let mut with_nul = bytes.to_vec();
        with_nul.push(0);
        self.data(&with_nul);
    }

    fn data(&mut self, data: &[u8]) {
        self.tar.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.tar.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.dir_mode(path, 0o755, 0, 0)
    }

    pub fn dir_mode(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> &mut Self {
        let name = format!("{}/", path.trim_end_matches('/'));
        self.raw(
            EntryType::Directory,
            name.as_bytes(),
            b"",
            mode,
            uid,
            gid,
            None,
            b"",
        )
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.file_mode(path, 0o644, 0, 0, data)
    }

    pub fn file_mode(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
    ) -> &mut Self {
        self.raw(
            EntryType::Regular,
            path.as_bytes(),
            b"",
            mode,
            uid,
            gid,
            None,
            data,
        )
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(
            EntryType::Symlink,
            path.as_bytes(),
            target.as_bytes(),
            0o777,
            0,
            0,
            None,
            b"",
        )
    }

    /// A hard link `path` to `target` (a path inside the same layer, normally).
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(
            EntryType::Link,
            path.as_bytes(),
            target.as_bytes(),
            0o644,
            0,
            0,
            None,
            b"",
        )
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        self.raw(
            EntryType::Char,
            path.as_bytes(),
            b"",
            0o666,
            0,
            0,
            Some((major, minor)),
            b"",
        )
    }

    pub fn block_device(&mut self, path: &str, major: u32, minor: u32) -> &mut Self {
        self.raw(
            EntryType::Block,
            path.as_bytes(),
            b"",
            0o660,
            0,
            0,
            Some((major, minor)),
            b"",
        )
    }

    /// An OCI whiteout: `dir/.wh.name` deletes `dir/name` of lower layers.
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        self.file(&format!("{dir}.wh.{name}"), b"")
    }

    /// An OCI opaque-directory marker: `dir` hides everything lower layers
    /// put in it.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{}/.wh..wh..opq", dir.trim_end_matches('/')), b"")
    }

    /// The tar, with its two zero end blocks.
    pub fn finish(&self) -> Layer {
        let mut tar = self.tar.clone();
        tar.extend(std::iter::repeat_n(0u8, 1024));
        Layer { tar }
    }
}

/// An uncompressed layer tar.
#[derive(Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
}

impl Layer {
    /// The digest of the uncompressed tar, which image configs list.
    pub fn diff_id(&self) -> String {
        sha256(&self.tar)
    }

    /// The layer as a blob of the given encoding.
    pub fn blob(&self, compression: Compression) -> LayerBlob {
        let data = match compression {
            Compression::Gzip => {
                // Level 1: the tests' layers are often random bytes, where a
                // higher level buys nothing and costs seconds in debug builds.
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&self.tar).expect("gzip");
                gz.finish().expect("gzip")
            }
            Compression::Zstd => zstd::encode_all(&self.tar[..], 1).expect("zstd"),
            Compression::None => self.tar.clone(),
        };
        LayerBlob {
            data,
            media_type: compression.media_type().to_string(),
            diff_id: self.diff_id(),
        }
    }

    pub fn gzip(&self) -> LayerBlob {
        self.blob(Compression::Gzip)
    }
}

/// A layer as the registry stores it: bytes, media type, and the diff_id of
/// what it decompresses to.
#[derive(Clone)]
pub struct LayerBlob {
    pub data: Vec<u8>,
    pub media_type: String,
    pub diff_id: String,
}

impl LayerBlob {
    pub fn digest(&self) -> String {
        sha256(&self.data)
    }
}

/// A one-file gzip layer: the smallest useful image content.
pub fn single_file(path: &str, data: &[u8]) -> LayerBlob {
    TarBuilder::new().file(path, data).finish().gzip()
}

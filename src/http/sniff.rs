//! The content type of an upload (§3.5): the magic bytes at the start of the body win, then
//! the path's extension. Runs on the first bytes of every PUT body, so it must finish in
//! bounded time for any input on every target.
//!
//! `infer` (0.16 to 0.22) walks zstd skippable frames computing `8 + frame length` in
//! `usize`: on 32-bit targets a length near `u32::MAX` wraps that to 0 and its loop never
//! advances, pinning an executor thread forever with 16 bytes of body. A head that starts
//! with a skippable-frame magic is therefore classified here, with checked arithmetic, and
//! never handed to `infer`; every other head reaches its zstd check only to be refused at
//! the magic.

use crate::storage_path::StoragePath;

/// Skippable zstd frames have magics `0x184D2A50..=0x184D2A5F` (little endian).
const SKIP_MASK: u32 = 0xFFFF_FFF0;
const SKIP_START: u32 = 0x184D_2A50;
/// A zstd data frame's magic, little endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The MIME type of a body whose first bytes are `head`, stored at `path`.
pub fn content_type(head: &[u8], path: &StoragePath) -> String {
    let sniffed = if starts_skippable(head) {
        zstd_after_skippable_frames(head).then_some("application/zstd")
    } else {
        infer::get(head).map(|kind| kind.mime_type())
    };
    sniffed
        .or_else(|| mime_guess::from_path(path.as_str()).first_raw())
        .unwrap_or("application/octet-stream")
        .to_string()
}

fn le32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

fn starts_skippable(buf: &[u8]) -> bool {
    le32(buf).is_some_and(|m| m & SKIP_MASK == SKIP_START)
}

/// Skippable frames followed by a zstd frame, within `buf`. Each step consumes at least 8
/// bytes, so the walk ends after at most `buf.len() / 8` frames.
fn zstd_after_skippable_frames(mut buf: &[u8]) -> bool {
    loop {
        if buf.starts_with(&ZSTD_MAGIC) {
            return true;
        }
        if !starts_skippable(buf) {
            return false;
        }
        let Some(len) = buf.get(4..8).and_then(le32) else {
            return false;
        };
        let next = usize::try_from(len).ok().and_then(|l| l.checked_add(8));
        match next.and_then(|n| buf.get(n..)) {
            Some(rest) => buf = rest,
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let p = |s| StoragePath::strict(s).unwrap();
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(content_type(png, &p("/pub/foo")), "image/png");
        assert_eq!(content_type(b"hi", &p("/pub/text.txt")), "text/plain");
        assert_eq!(
            content_type(&[0, 1, 2, 3, 4], &p("/pub/foo.txt")),
            "text/plain"
        );
        assert_eq!(content_type(b"{}", &p("/pub/x.json")), "application/json");
        assert_eq!(
            content_type(b"{}", &p("/pub/x")),
            "application/octet-stream"
        );
    }

    /// The 16 bytes that hang `infer` on 32-bit targets: a skippable frame whose length
    /// wraps `8 + len` to 0. CI runs this under qemu-user for armv7.
    #[test]
    fn a_wrapping_skippable_frame_terminates() {
        let p = StoragePath::strict("/pub/x").unwrap();
        let mut body = vec![0x50, 0x2A, 0x4D, 0x18, 0xF8, 0xFF, 0xFF, 0xFF];
        body.extend_from_slice(&[0; 8]);
        assert_eq!(content_type(&body, &p), "application/octet-stream");
        let mut every_wrap = body.clone();
        for len in [0xFFFF_FFF8u32, 0xFFFF_FFFF, 0xFFFF_FFF0] {
            every_wrap[4..8].copy_from_slice(&len.to_le_bytes());
            assert_eq!(content_type(&every_wrap, &p), "application/octet-stream");
        }
    }

    #[test]
    fn zstd_behind_skippable_frames_is_still_zstd() {
        let p = StoragePath::strict("/pub/x.bin").unwrap();
        // A skippable frame of 4 bytes, then a zstd frame's magic.
        let mut body = vec![0x5F, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
        body.extend_from_slice(&ZSTD_MAGIC);
        body.extend_from_slice(&[0; 8]);
        assert_eq!(content_type(&body, &p), "application/zstd");
        assert_eq!(content_type(&ZSTD_MAGIC, &p), "application/zstd");
        // The same, cut inside the skippable frame: not zstd, so the extension decides.
        assert_eq!(content_type(&body[..10], &p), "application/octet-stream");
        let txt = StoragePath::strict("/pub/x.txt").unwrap();
        assert_eq!(content_type(&body[..10], &txt), "text/plain");
    }
}

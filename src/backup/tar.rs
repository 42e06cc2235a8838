//! Just enough of the POSIX ustar format for a backup point: regular files with short
//! names, written in order and read back in order, so that a decrypted point can also be
//! listed and unpacked with `tar` on any machine. Sizes past ustar's 8 GiB octal field use
//! the GNU base-256 form that tar readers accept.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// The 512-byte header of a regular file.
fn header(name: &str, size: u64, mtime_secs: u64) -> io::Result<[u8; BLOCK]> {
    if name.len() > 100 || name.is_empty() {
        return Err(io::Error::other(format!(
            "tar entry name {name:?} is too long"
        )));
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o600);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size < 8 << 30 {
        octal(&mut h[124..136], size);
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[136..148], mtime_secs);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    octal(&mut h[148..155], sum as u64);
    h[155] = b' ';
    Ok(h)
}

/// Writes one file: header, `size` bytes copied from `body`, padding.
pub fn append(
    out: &mut impl Write,
    name: &str,
    size: u64,
    mtime_secs: u64,
    body: &mut impl Read,
) -> io::Result<()> {
    out.write_all(&header(name, size, mtime_secs)?)?;
    let copied = io::copy(&mut body.take(size), out)?;
    if copied != size {
        return Err(io::Error::other(format!(
            "{name}: {copied} bytes instead of {size}"
        )));
    }
    pad(out, size)
}

fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// The end of the archive: two zero blocks.
pub fn finish(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

/// Reads entries in order.
pub struct Reader<R: Read> {
    r: R,
    /// Bytes of the current entry not yet consumed, and its padding.
    left: u64,
    padding: u64,
}

fn parse_size(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&f[4..12]);
        return Some(u64::from_be_bytes(b));
    }
    let s = std::str::from_utf8(f).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(if s.is_empty() { "0" } else { s }, 8).ok()
}

impl<R: Read> Reader<R> {
    pub fn new(r: R) -> Self {
        Reader {
            r,
            left: 0,
            padding: 0,
        }
    }

    /// Moves to the next entry: its name and size; `None` at the end of the archive.
    /// The entry's bytes are then read from the reader itself.
    pub fn next_entry(&mut self) -> io::Result<Option<(String, u64)>> {
        io::copy(
            &mut (&mut self.r).take(self.left + self.padding),
            &mut io::sink(),
        )?;
        let mut h = [0u8; BLOCK];
        self.r.read_exact(&mut h)?;
        if h.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed tar header");
        if &h[257..262] != b"ustar" || h[156] != b'0' {
            return Err(bad());
        }
        let mut check = h;
        check[148..156].fill(b' ');
        let sum: u64 = check.iter().map(|b| *b as u64).sum();
        if parse_size(&h[148..156]) != Some(sum) {
            return Err(bad());
        }
        let end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8(h[..end].to_vec()).map_err(|_| bad())?;
        let size = parse_size(&h[124..136]).ok_or_else(bad)?;
        self.left = size;
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        Ok(Some((name, size)))
    }
}

impl<R: Read> Read for Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.left as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_the_checksum_is_checked() {
        let mut out = Vec::new();
        append(
            &mut out,
            "manifest.json",
            3,
            1_700_000_000,
            &mut &b"{}\n"[..],
        )
        .unwrap();
        let big = vec![9u8; 1500];
        append(&mut out, "store.dump", 1500, 1_700_000_000, &mut &big[..]).unwrap();
        finish(&mut out).unwrap();
        assert_eq!(out.len(), 512 + 512 + 512 + 1536 + 1024);

        let mut r = Reader::new(&out[..]);
        assert_eq!(r.next_entry().unwrap(), Some(("manifest.json".into(), 3)));
        // the second entry is reached without reading the first
        assert_eq!(r.next_entry().unwrap(), Some(("store.dump".into(), 1500)));
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, big);
        assert_eq!(r.next_entry().unwrap(), None);

        out[1024 + 2] ^= 1; // inside the second header's name
        let mut r = Reader::new(&out[..]);
        r.next_entry().unwrap();
        assert!(r.next_entry().is_err());
        assert!(append(&mut Vec::new(), "x", 5, 0, &mut &b"abc"[..]).is_err());
    }

    #[test]
    fn sizes_past_eight_gib_use_base_256() {
        let h = header("big", 9 << 30, 0).unwrap();
        assert_eq!(parse_size(&h[124..136]), Some(9 << 30));
        assert_eq!(
            parse_size(&header("s", 0o777, 0).unwrap()[124..136]),
            Some(0o777)
        );
    }
}

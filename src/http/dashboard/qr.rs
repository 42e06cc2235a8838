//! QR codes as inline SVG: the `qrcode` crate makes the module matrix, and each row's runs
//! of dark modules become one path segment (a few KiB for an invitation link, where one
//! rectangle per module would be tens).

use qrcode::{Color, EcLevel, QrCode};

/// Modules of white border the standard asks for.
const QUIET: usize = 4;

/// An SVG of `text` at error correction level M; `label` is read out by screen readers.
pub fn svg(text: &str, label: &str) -> String {
    let Ok(code) = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M) else {
        return String::new();
    };
    let w = code.width();
    let colors = code.to_colors();
    let size = w + 2 * QUIET;
    let mut d = String::with_capacity(w * w / 2);
    for y in 0..w {
        let row = &colors[y * w..(y + 1) * w];
        let mut x = 0;
        while x < w {
            if row[x] == Color::Dark {
                let start = x;
                while x < w && row[x] == Color::Dark {
                    x += 1;
                }
                d.push_str(&format!(
                    "M{} {}h{}v1H{}z",
                    start + QUIET,
                    y + QUIET,
                    x - start,
                    start + QUIET
                ));
            } else {
                x += 1;
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" role=\"img\" \
         aria-label=\"{}\" shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" \
         fill=\"#fff\"/><path d=\"{d}\" fill=\"#000\"/></svg>",
        escape_attr(label)
    )
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_draws_exactly_the_dark_modules() {
        let text = "pubkyauth://direct_signup?hs=8pinxxgqs41n4aididenw5apqp1urfmzdztr8jt4abrkdn435ewo&st=ABCD-1234-EFGH";
        let s = svg(text, "an \"invite\"");
        assert!(s.starts_with("<svg") && s.contains("aria-label=\"an &quot;invite&quot;\""));
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).unwrap();
        let dark = code
            .to_colors()
            .iter()
            .filter(|c| **c == Color::Dark)
            .count();
        // Each segment "M x yhNv1Hxz" covers N modules.
        let d = s.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        let covered: usize = d
            .split('h')
            .skip(1)
            .map(|seg| seg.split('v').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(covered, dark);
        assert!(s.len() < 12 * 1024, "{} bytes", s.len());
    }
}

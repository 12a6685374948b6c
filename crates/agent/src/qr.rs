//! The pair URL as a QR code: drawn in the terminal with half-block characters, and
//! written as a PNG for when the terminal cannot show it (a service, a narrow window).

use qrcode::{Color, EcLevel, QrCode};

use crate::error::AgentError;

/// Light modules around the code, as the QR specification asks.
pub const QUIET_ZONE: usize = 4;
/// Pixels per module in the PNG.
pub const PNG_SCALE: usize = 8;

/// A QR code's modules, `true` = dark, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modules {
    width: usize,
    dark: Vec<bool>,
}

impl Modules {
    /// Encodes `data` with medium error correction.
    pub fn encode(data: &str) -> Result<Self, AgentError> {
        let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
            .map_err(|e| AgentError::Crypto(format!("cannot make a QR code: {e}")))?;
        let width = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(Self { width, dark })
    }

    /// Modules per side, without the quiet zone.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether the module at (x, y) is dark; anything outside the code is light.
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        if x >= self.width || y >= self.width {
            return false;
        }
        y.checked_mul(self.width)
            .and_then(|row| row.checked_add(x))
            .and_then(|i| self.dark.get(i))
            .copied()
            .unwrap_or(false)
    }

    fn padded_side(&self) -> usize {
        self.width.saturating_add(QUIET_ZONE.saturating_mul(2))
    }

    /// Whether the module at padded coordinates (quiet zone included) is dark.
    fn is_dark_padded(&self, px: usize, py: usize) -> bool {
        match (px.checked_sub(QUIET_ZONE), py.checked_sub(QUIET_ZONE)) {
            (Some(x), Some(y)) => self.is_dark(x, y),
            _ => false,
        }
    }

    /// The code for a terminal: two module rows per text line with `▀ ▄ █`. Light modules
    /// are drawn as blocks and dark ones as blanks, which shows correctly on the usual
    /// light-on-dark terminal; phone scanners also read the inverted form.
    pub fn to_terminal(&self) -> String {
        let side = self.padded_side();
        let mut out = String::new();
        let mut y = 0;
        while y < side {
            for x in 0..side {
                let top = !self.is_dark_padded(x, y);
                let bottom =
                    y.saturating_add(1) < side && !self.is_dark_padded(x, y.saturating_add(1));
                out.push(match (top, bottom) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            out.push('\n');
            y = y.saturating_add(2);
        }
        out
    }

    /// The code as an 8-bit grayscale PNG, dark on white, [`PNG_SCALE`] pixels per module
    /// and a [`QUIET_ZONE`]-module margin.
    pub fn to_png(&self) -> Result<Vec<u8>, AgentError> {
        let side_px = self.padded_side().saturating_mul(PNG_SCALE);
        let side = u32::try_from(side_px)
            .map_err(|_| AgentError::Crypto("QR code too large for a PNG".into()))?;
        let mut pixels = Vec::with_capacity(side_px.saturating_mul(side_px));
        for py in 0..side_px {
            for px in 0..side_px {
                let dark = self.is_dark_padded(px / PNG_SCALE, py / PNG_SCALE);
                pixels.push(if dark { 0u8 } else { 255u8 });
            }
        }
        let png_err =
            |e: png::EncodingError| AgentError::Crypto(format!("writing the QR PNG: {e}"));
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, side, side);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(png_err)?;
            w.write_image_data(&pixels).map_err(png_err)?;
            w.finish().map_err(png_err)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )]

    use super::*;

    const URL: &str =
        "https://localhost:8443/pair#token=q8Zb1rWm0cS6YgkT9nAqLh3XvE2uJp5dFi7oKa4sNw0";

    #[test]
    fn png_is_valid_and_matches_the_modules() {
        let m = Modules::encode(URL).unwrap();
        let bytes = m.to_png().unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let side = (m.width() + 2 * QUIET_ZONE) * PNG_SCALE;
        assert_eq!(info.width as usize, side);
        assert_eq!(info.height as usize, side);
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        // Every module's pixels carry its colour; the quiet zone is white.
        for my in 0..m.width() {
            for mx in 0..m.width() {
                let px = (mx + QUIET_ZONE) * PNG_SCALE + PNG_SCALE / 2;
                let py = (my + QUIET_ZONE) * PNG_SCALE + PNG_SCALE / 2;
                let want = if m.is_dark(mx, my) { 0 } else { 255 };
                assert_eq!(buf[py * side + px], want, "module ({mx},{my})");
            }
        }
        assert!(
            buf[..side * QUIET_ZONE * PNG_SCALE]
                .iter()
                .all(|p| *p == 255)
        );
        // The top-left finder pattern starts with a dark module.
        assert!(m.is_dark(0, 0));
    }

    #[test]
    fn terminal_rendering_has_two_module_rows_per_line() {
        let m = Modules::encode(URL).unwrap();
        let text = m.to_terminal();
        let side = m.width() + 2 * QUIET_ZONE;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), side.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == side));
        // The quiet zone is light, so the first line is all full blocks.
        assert!(lines[0].chars().all(|c| c == '█'));
    }

    #[test]
    fn outside_the_code_is_light() {
        let m = Modules::encode("x").unwrap();
        assert!(!m.is_dark(m.width(), 0));
        assert!(!m.is_dark(0, m.width()));
    }
}

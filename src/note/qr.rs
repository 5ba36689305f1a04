//! QR codes of note URIs, as PNG or SVG bytes, for flyers, screens and phone cameras.
//!
//! Encoding is the `qrcode` crate's (byte mode, error correction M: a crumpled or partly
//! covered flyer still scans; L only when M would not hold the URI). PNG pixels are written
//! with the `png` crate: 8-bit grey, each module a square of [`MODULE_PIXELS`], with the
//! standard quiet zone of 4 modules. It never writes files: callers get bytes.

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module in a PNG: 8 gives a 400-850 px image for typical notes, sharp when
/// printed at a few centimetres and easy for phone cameras.
const MODULE_PIXELS: usize = 8;

/// Modules of white border the QR specification asks for.
const QUIET_ZONE: usize = 4;

/// The image format, chosen by the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrFormat {
    Png,
    Svg,
}

impl QrFormat {
    /// `.png` or `.svg` (any case); anything else is not a format qasid writes.
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some(QrFormat::Png),
            "svg" => Some(QrFormat::Svg),
            _ => None,
        }
    }
}

/// Why a QR code could not be made.
#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the note is too long for one QR code ({0})")]
    TooLong(String),
    #[error("PNG encoding: {0}")]
    Png(String),
}

/// The QR code of `text` as the bytes of a PNG or SVG file.
pub fn render(text: &str, format: QrFormat) -> Result<Vec<u8>, QrError> {
    let code = QrCode::with_error_correction_level(text, EcLevel::M)
        .or_else(|_| QrCode::with_error_correction_level(text, EcLevel::L))
        .map_err(|e| QrError::TooLong(e.to_string()))?;
    match format {
        QrFormat::Svg => Ok(code
            .render::<qrcode::render::svg::Color<'_>>()
            .module_dimensions(MODULE_PIXELS as u32, MODULE_PIXELS as u32)
            .quiet_zone(true)
            .build()
            .into_bytes()),
        QrFormat::Png => png(&code),
    }
}

fn png(code: &QrCode) -> Result<Vec<u8>, QrError> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * MODULE_PIXELS;
    let mut pixels = vec![255u8; side * side];
    for y in 0..modules {
        for x in 0..modules {
            if colors[y * modules + x] != Color::Dark {
                continue;
            }
            let (px, py) = (
                (x + QUIET_ZONE) * MODULE_PIXELS,
                (y + QUIET_ZONE) * MODULE_PIXELS,
            );
            for row in py..py + MODULE_PIXELS {
                pixels[row * side + px..row * side + px + MODULE_PIXELS].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let err = |e: png::EncodingError| QrError::Png(e.to_string());
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(&pixels).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_and_svg_have_their_signatures() {
        let png = render("qasid:1:AAAA", QrFormat::Png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = String::from_utf8(render("qasid:1:AAAA", QrFormat::Svg).unwrap()).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(matches!(
            render(&"x".repeat(4000), QrFormat::Png),
            Err(QrError::TooLong(_))
        ));
        assert_eq!(QrFormat::from_path("a/B.PNG".as_ref()), Some(QrFormat::Png));
        assert_eq!(QrFormat::from_path("a/b.jpg".as_ref()), None);
    }
}

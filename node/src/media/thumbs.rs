//! Image decoding for dimensions and thumbnails, with limits against decompression bombs:
//! an image whose header declares a side over [`IMAGE_SIDE_MAX`], more than
//! [`IMAGE_PIXELS_MAX`] pixels or a decoded size over [`DECODE_BYTES_MAX`] is refused before
//! anything is decoded. Decoding runs under `catch_unwind`: a decoder panic refuses the image.

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};
use std::io::BufReader;
use std::path::Path;

/// Thumbnail sizes: the longest side, largest first.
pub const THUMBNAIL_SIDES: [u32; 2] = [800, 160];

/// Longest side of an image that gets thumbnails.
pub const IMAGE_SIDE_MAX: u32 = 12_000;

/// Most pixels of an image that gets thumbnails (50 Mpx).
pub const IMAGE_PIXELS_MAX: u64 = 50_000_000;

/// Most bytes a decoded image may take (50 Mpx of RGBA8 is 200 MB).
pub const DECODE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// JPEG quality of thumbnails.
const JPEG_QUALITY: u8 = 82;

/// A thumbnail as attachments carry it: a blob id and its pixel size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailMeta {
    pub id: String,
    pub width: u32,
    pub height: u32,
}

/// An encoded thumbnail, not stored yet.
pub(super) struct Rendered {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The decodable image format of a sniffed type.
pub(super) fn image_format(mime: &str) -> Option<ImageFormat> {
    match mime {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(IMAGE_SIDE_MAX);
    limits.max_image_height = Some(IMAGE_SIDE_MAX);
    limits.max_alloc = Some(DECODE_BYTES_MAX);
    limits
}

fn reader(
    path: &Path,
    format: ImageFormat,
) -> Result<ImageReader<BufReader<std::fs::File>>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut reader = ImageReader::new(BufReader::new(file));
    reader.set_format(format);
    Ok(reader)
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the image decoder panicked".into()))
}

/// The displayed size (EXIF orientation applied) from the image's header, without decoding
/// pixels and without the thumbnail limits (a huge image still gets its dimensions).
pub(super) fn displayed_dimensions(path: &Path, format: ImageFormat) -> Option<(u32, u32)> {
    let result = guarded(|| {
        let mut reader = reader(path, format)?;
        reader.no_limits();
        let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
        let (width, height) = decoder.dimensions();
        let orientation = decoder.orientation().map_err(|e| e.to_string())?;
        Ok(if swaps_sides(orientation) { (height, width) } else { (width, height) })
    });
    result.ok()
}

fn swaps_sides(orientation: image::metadata::Orientation) -> bool {
    use image::metadata::Orientation::*;
    matches!(orientation, Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH)
}

/// Decodes the image (first frame of an animation) within the limits and renders one
/// thumbnail per [`THUMBNAIL_SIDES`] entry, skipping a size that would equal the previous one
/// (a small image gets one thumbnail at its own size: never upscaled).
pub(super) fn render(path: &Path, format: ImageFormat) -> Result<Vec<Rendered>, String> {
    guarded(|| {
        let mut reader = reader(path, format)?;
        reader.limits(limits());
        let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
        let (width, height) = decoder.dimensions();
        if width == 0 || height == 0 {
            return Err("the image is empty".into());
        }
        if u64::from(width) * u64::from(height) > IMAGE_PIXELS_MAX {
            return Err(format!("{width}×{height} is more than {IMAGE_PIXELS_MAX} pixels"));
        }
        if decoder.total_bytes() > DECODE_BYTES_MAX {
            return Err("the decoded image would be too large".into());
        }
        let orientation =
            decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut image = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
        image.apply_orientation(orientation);

        let mut rendered: Vec<Rendered> = Vec::new();
        let mut source = image;
        for side in THUMBNAIL_SIDES {
            let (w, h) = fit(source.width(), source.height(), side);
            if rendered.last().is_some_and(|r| (r.width, r.height) == (w, h)) {
                continue;
            }
            let thumbnail = if (w, h) == (source.width(), source.height()) {
                source
            } else {
                source.thumbnail_exact(w, h)
            };
            rendered.push(Rendered { bytes: encode(&thumbnail)?, width: w, height: h });
            // The next, smaller size is made from this one: much less work.
            source = thumbnail;
        }
        Ok(rendered)
    })
}

/// The size that fits in `side`×`side` with the aspect ratio kept, never larger than the image.
pub(super) fn fit(width: u32, height: u32, side: u32) -> (u32, u32) {
    if width <= side && height <= side {
        return (width, height);
    }
    let scale = |short: u32, long: u32| {
        let scaled = (u64::from(short) * u64::from(side) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(scaled).unwrap_or(side).clamp(1, side)
    };
    if width >= height {
        (side, scale(height, width))
    } else {
        (scale(width, height), side)
    }
}

/// JPEG, or PNG when some pixel is not opaque.
fn encode(image: &DynamicImage) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    if image.color().has_alpha() {
        let rgba = image.to_rgba8();
        if rgba.pixels().any(|pixel| pixel.0[3] < u8::MAX) {
            rgba.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
                .map_err(|e| e.to_string())?;
            return Ok(bytes);
        }
    }
    image
        .to_rgb8()
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut bytes,
            JPEG_QUALITY,
        ))
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

//! Which names are Finder's metadata files, kept out of the bucket.
//!
//! On a WebDAV volume macOS stores extended attributes, resource forks and Finder tags in
//! AppleDouble files named `._NAME` next to each file, and window and icon layout in
//! `.DS_Store` in every directory it opens. Behind S3 Files every file in the mount becomes an
//! S3 object, so these would litter the bucket with one extra object per file. They are held in
//! memory instead (see [`crate::overlay`]): refusing them makes Finder fail copies with error
//! -36, because it treats a failed `._NAME` write as a failed copy.
//!
//! Two more names are Finder's own: `Icon\r` ("Icon" and a carriage return), the empty file
//! whose resource fork holds a folder's custom icon (the icon itself arrives as `._Icon\r`),
//! which would be one empty object per customized folder; and `.localized`, the marker of a
//! folder with a localized name, which dav-server's `LocalFs` refuses (403) in its macOS mode,
//! and a refused file aborts Finder's copy of the folder holding it.

/// True if the last path segment is a Finder metadata file: `.DS_Store`, `._*`, `Icon\r` or
/// `.localized`.
///
/// `name` is one raw path segment (no `/`), as the WebDAV path gives it.
pub fn is_finder_metadata(name: &[u8]) -> bool {
    matches!(name, b".DS_Store" | b"Icon\r" | b".localized") || name.starts_with(b"._")
}

/// True if the last segment of `path` (raw bytes, `/`-separated, an optional trailing `/`) is a
/// Finder metadata name.
pub fn path_is_finder_metadata(path: &[u8]) -> bool {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let name = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    };
    is_finder_metadata(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finder_names() {
        for name in [
            ".DS_Store",
            "._x",
            "._",
            "._.DS_Store",
            "._report.pdf",
            "Icon\r",
            ".localized",
        ] {
            assert!(is_finder_metadata(name.as_bytes()), "{name}");
        }
        for name in [
            "x",
            ".DS_Store2",
            ".ds_store",
            "_x",
            "x._y",
            ".x",
            "",
            ".hidden",
            "Icon",
            "Icon\r\n",
            "icon\r",
            ".localized2",
        ] {
            assert!(!is_finder_metadata(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn only_the_last_segment_counts() {
        assert!(path_is_finder_metadata(b"/a/b/._c"));
        assert!(path_is_finder_metadata(b"/.DS_Store"));
        assert!(path_is_finder_metadata(b"/a/._dir/"));
        assert!(!path_is_finder_metadata(b"/._a/b"));
        assert!(!path_is_finder_metadata(b"/"));
        assert!(!path_is_finder_metadata(b""));
    }
}

//! Cutting text to a size at character boundaries, for outputs, logs and messages.

/// The last `max` bytes of `text` (fewer, to start at a character boundary).
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// The first `max` bytes of `text` (fewer, to end at a character boundary), and whether it was cut.
pub fn head(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_character_boundaries() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ééé", 3), "é");
        assert_eq!(head("ééé", 3), ("é".to_string(), true));
        assert_eq!(head("ab", 3), ("ab".to_string(), false));
    }
}

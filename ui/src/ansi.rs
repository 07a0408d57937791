//! Terminal output as a person would see it: ANSI SGR sequences (colours, bold, underline) become
//! styled spans; every other escape sequence (cursor moves, OSC titles and links, ...) is removed,
//! so no raw `ESC[` ever shows in a transcript.

/// The look of a run of text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// One of the 16 terminal colours (0-7 normal, 8-15 bright).
    pub fg: Option<u8>,
    pub bg: Option<u8>,
    pub bold: bool,
    pub dim: bool,
    pub italic: bool,
    pub underline: bool,
}

impl Style {
    /// CSS classes of `ui/static/style.css` (classes rather than inline styles, for the CSP).
    pub fn classes(&self) -> String {
        let mut out = Vec::new();
        if let Some(c) = self.fg {
            out.push(format!("ansi-fg{c}"));
        }
        if let Some(c) = self.bg {
            out.push(format!("ansi-bg{c}"));
        }
        for (on, class) in [
            (self.bold, "ansi-bold"),
            (self.dim, "ansi-dim"),
            (self.italic, "ansi-italic"),
            (self.underline, "ansi-ul"),
        ] {
            if on {
                out.push(class.to_string());
            }
        }
        out.join(" ")
    }

    fn apply(&mut self, params: &str) {
        let mut codes = params.split(';').map(|p| p.parse::<u16>().unwrap_or(0)).peekable();
        if params.is_empty() {
            *self = Style::default();
            return;
        }
        while let Some(code) = codes.next() {
            match code {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some((code - 30) as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some((code - 40) as u8),
                49 => self.bg = None,
                90..=97 => self.fg = Some((code - 90 + 8) as u8),
                100..=107 => self.bg = Some((code - 100 + 8) as u8),
                38 | 48 => {
                    // 256 colours (5;n) keep their first 16; true colour (2;r;g;b) is dropped.
                    let colour = match codes.next() {
                        Some(5) => codes.next().filter(|n| *n < 16).map(|n| n as u8),
                        Some(2) => {
                            codes.next();
                            codes.next();
                            codes.next();
                            None
                        }
                        _ => None,
                    };
                    if code == 38 {
                        self.fg = colour;
                    } else {
                        self.bg = colour;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Splits terminal text into styled runs; escape sequences themselves never appear in the output.
pub fn parse(text: &str) -> Vec<(Style, String)> {
    let mut out: Vec<(Style, String)> = Vec::new();
    let mut style = Style::default();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            current.push(c);
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                let mut params = String::new();
                let mut end = None;
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        end = Some(c);
                        break;
                    }
                    params.push(c);
                }
                if end == Some('m') {
                    if !current.is_empty() {
                        out.push((style, std::mem::take(&mut current)));
                    }
                    style.apply(&params);
                }
            }
            Some(']') => {
                // OSC: up to BEL or ESC \.
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            Some(_) => {
                chars.next(); // a two-character escape (ESC =, ESC 7, ...)
            }
            None => {}
        }
    }
    if !current.is_empty() {
        out.push((style, current));
    }
    out
}

/// The text without any escape sequence.
pub fn strip(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_string();
    }
    parse(text).into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_and_stripping() {
        let red = Style { fg: Some(1), ..Default::default() };
        let bold_green = Style { fg: Some(2), bold: true, ..Default::default() };
        let cases: Vec<(&str, Vec<(Style, &str)>)> = vec![
            ("plain", vec![(Style::default(), "plain")]),
            ("\u{1b}[31merror\u{1b}[0m done", vec![(red, "error"), (Style::default(), " done")]),
            ("\u{1b}[1;32mok\u{1b}[m", vec![(bold_green, "ok")]),
            ("\u{1b}[38;5;9mhi", vec![(Style { fg: Some(9), ..Default::default() }, "hi")]),
            ("\u{1b}[38;2;1;2;3mtrue", vec![(Style::default(), "true")]),
            ("a\u{1b}[2Kb\u{1b}[1Ac", vec![(Style::default(), "abc")]),
            ("\u{1b}]0;title\u{7}x", vec![(Style::default(), "x")]),
            ("\u{1b}]8;;https://e.x\u{1b}\\link\u{1b}]8;;\u{1b}\\", vec![(Style::default(), "link")]),
            ("cut \u{1b}[3", vec![(Style::default(), "cut ")]),
        ];
        for (input, want) in cases {
            let want: Vec<(Style, String)> = want.into_iter().map(|(s, t)| (s, t.to_string())).collect();
            assert_eq!(parse(input), want, "{input:?}");
            assert!(!strip(input).contains('\u{1b}'), "{input:?}");
        }
        assert_eq!(Style { fg: Some(9), bold: true, ..Default::default() }.classes(), "ansi-fg9 ansi-bold");
    }
}

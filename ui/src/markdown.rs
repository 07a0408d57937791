//! Splitting assistant text into prose and fenced code blocks, for `<pre><code>` rendering.
//!
//! Deliberately small: only ``` / ~~~ fences are recognised. An unclosed fence (the model is
//! still streaming it) is a code block up to the end of the text, so the layout does not jump
//! from prose to code when the closing fence arrives.

/// One block of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block<'a> {
    Text(&'a str),
    Code { lang: &'a str, code: &'a str },
}

/// Splits `text` into blocks, in order. Fence lines themselves are not part of any block.
pub fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut start = 0; // start of the current block
    let mut fence: Option<(&str, &str)> = None; // (marker, lang) of an open fence
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let line_start = pos;
        pos += line.len();
        let trimmed = line.trim_start();
        let marker = if trimmed.starts_with("```") {
            "```"
        } else if trimmed.starts_with("~~~") {
            "~~~"
        } else {
            continue;
        };
        match fence {
            None => {
                if line_start > start {
                    out.push(Block::Text(&text[start..line_start]));
                }
                let lang = trimmed[3..].trim_matches(|c: char| c == '`' || c == '~' || c.is_whitespace());
                fence = Some((marker, lang));
                start = pos;
            }
            Some((open, lang)) if open == marker && trimmed.trim_end().trim_start_matches(marker).is_empty() => {
                out.push(Block::Code { lang, code: &text[start..line_start] });
                fence = None;
                start = pos;
            }
            Some(_) => {}
        }
    }
    match fence {
        Some((_, lang)) => out.push(Block::Code { lang, code: &text[start.min(text.len())..] }),
        None if start < text.len() => out.push(Block::Text(&text[start..])),
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Vec<Block<'_>>)] = &[
            ("plain", vec![Block::Text("plain")]),
            (
                "a\n```rust\nfn x() {}\n```\nb",
                vec![Block::Text("a\n"), Block::Code { lang: "rust", code: "fn x() {}\n" }, Block::Text("b")],
            ),
            ("```\nopen", vec![Block::Code { lang: "", code: "open" }]),
            ("x\n```sh\n", vec![Block::Text("x\n"), Block::Code { lang: "sh", code: "" }]),
            ("~~~\n```\n~~~\n", vec![Block::Code { lang: "", code: "```\n" }]),
            ("", vec![]),
        ];
        for (input, want) in cases {
            assert_eq!(&blocks(input), want, "{input:?}");
        }
    }
}

//! A permission request's tool input, made readable (SPEC 8), and a question's answers.
//!
//! Pure data, no web-sys, so it is tested on the host. The views render what this returns as
//! text nodes only: the input is the agent's (and the model's) text, never markup.

use serde_json::{Map, Value};

/// The tool name Claude Code uses for a question to the user.
pub const ASK_USER_QUESTION: &str = "AskUserQuestion";

/// Most diff lines rendered; the rest is summed up as "N more lines".
pub const MAX_DIFF_LINES: usize = 400;

/// One line of an edit shown as a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Removed(String),
    Added(String),
    /// Between two edits of a MultiEdit.
    Separator,
}

/// What a permission card shows for the tool's input.
#[derive(Debug, Clone, PartialEq)]
pub enum InputView {
    /// Bash: the command, and Claude's own words for it.
    Command { command: String, description: Option<String> },
    /// Edit, MultiEdit, Write: the file and the change as -/+ lines.
    Diff { path: String, lines: Vec<DiffLine> },
    /// AskUserQuestion.
    Questions(Vec<Question>),
    /// Any other tool: its input as pretty JSON.
    Json(String),
}

/// One question of an AskUserQuestion request.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub question: String,
    pub header: Option<String>,
    pub options: Vec<QuestionOption>,
    pub multi_select: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuestionOption {
    pub label: String,
    pub description: Option<String>,
}

fn str_field<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

/// The lines of `old` as removals followed by the lines of `new` as additions.
pub fn diff_lines(old: &str, new: &str) -> Vec<DiffLine> {
    let removed = old.lines().map(|l| DiffLine::Removed(l.to_string()));
    let added = new.lines().map(|l| DiffLine::Added(l.to_string()));
    removed.chain(added).collect()
}

/// The input's own description (Bash's `description`) when it says something the request's
/// description does not: the agent often copies one into the other, and a card that prints the
/// same sentence twice reads as a glitch.
pub fn extra_note<'a>(note: Option<&'a str>, request_description: Option<&str>) -> Option<&'a str> {
    let said = request_description.map(str::trim).unwrap_or_default();
    note.map(str::trim).filter(|n| !n.is_empty() && !said.contains(n))
}

/// The readable form of a tool's input; anything unexpected falls back to JSON.
pub fn input_view(tool_name: &str, input: &Value) -> InputView {
    let path = str_field(input, "file_path").or_else(|| str_field(input, "notebook_path"));
    let view = match tool_name {
        "Bash" => str_field(input, "command").map(|command| InputView::Command {
            command: command.to_string(),
            description: str_field(input, "description").map(str::to_string),
        }),
        "Edit" => path
            .zip(str_field(input, "old_string"))
            .zip(str_field(input, "new_string"))
            .map(|((path, old), new)| InputView::Diff { path: path.to_string(), lines: diff_lines(old, new) }),
        "MultiEdit" => path.zip(input.get("edits").and_then(Value::as_array)).map(|(path, edits)| {
            let mut lines = Vec::new();
            for (i, edit) in edits.iter().enumerate() {
                if i > 0 {
                    lines.push(DiffLine::Separator);
                }
                let old = str_field(edit, "old_string").unwrap_or("");
                let new = str_field(edit, "new_string").unwrap_or("");
                lines.extend(diff_lines(old, new));
            }
            InputView::Diff { path: path.to_string(), lines }
        }),
        "Write" => path
            .zip(str_field(input, "content"))
            .map(|(path, content)| InputView::Diff { path: path.to_string(), lines: diff_lines("", content) }),
        ASK_USER_QUESTION => questions(input).map(InputView::Questions),
        _ => None,
    };
    view.unwrap_or_else(|| InputView::Json(serde_json::to_string_pretty(input).unwrap_or_default()))
}

/// The questions of an AskUserQuestion input; `None` when there is none to answer.
pub fn questions(input: &Value) -> Option<Vec<Question>> {
    let list = input.get("questions")?.as_array()?;
    let questions: Vec<Question> = list
        .iter()
        .filter_map(|q| {
            let options = q
                .get("options")
                .and_then(Value::as_array)
                .map(|opts| {
                    opts.iter()
                        .filter_map(|o| {
                            Some(QuestionOption {
                                label: str_field(o, "label")?.to_string(),
                                description: str_field(o, "description").map(str::to_string),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(Question {
                question: str_field(q, "question")?.to_string(),
                header: str_field(q, "header").map(str::to_string),
                options,
                multi_select: q.get("multiSelect").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect();
    (!questions.is_empty()).then_some(questions)
}

/// The `updatedInput` that answers a question: the original input plus
/// `answers: {<question text>: <chosen labels joined by ", ">}`. `chosen[i]` holds the indexes
/// of the options picked for question `i`, in any order; labels follow the options' order.
pub fn answers_input(input: &Value, questions: &[Question], chosen: &[Vec<usize>]) -> Value {
    let mut answers = Map::new();
    for (i, q) in questions.iter().enumerate() {
        let picked = chosen.get(i).map(Vec::as_slice).unwrap_or_default();
        let labels: Vec<&str> =
            q.options.iter().enumerate().filter(|(j, _)| picked.contains(j)).map(|(_, o)| o.label.as_str()).collect();
        answers.insert(q.question.clone(), Value::String(labels.join(", ")));
    }
    let mut out = match input {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    out.insert("answers".into(), Value::Object(answers));
    Value::Object(out)
}

/// Whether every question has at least one choice (Submit is offered only then).
pub fn all_answered(questions: &[Question], chosen: &[Vec<usize>]) -> bool {
    (0..questions.len()).all(|i| chosen.get(i).is_some_and(|c| !c.is_empty()))
}

/// Picks option `option` of a question: replaces the choice for a single-select question,
/// toggles it for a multi-select one.
pub fn choose(chosen: &mut Vec<usize>, option: usize, multi_select: bool) {
    if !multi_select {
        *chosen = vec![option];
    } else if let Some(at) = chosen.iter().position(|&o| o == option) {
        chosen.remove(at);
    } else {
        chosen.push(option);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Issue 22: the card printed its description twice.
    #[test]
    fn a_note_the_request_already_says_is_not_repeated() {
        assert_eq!(extra_note(Some("Create a file"), Some("Create a file")), None);
        assert_eq!(extra_note(Some("Create a file"), Some("Claude wants to run: Create a file")), None);
        assert_eq!(extra_note(Some("Create a file"), Some("Claude wants to run a command")), Some("Create a file"));
        assert_eq!(extra_note(Some("Create a file"), None), Some("Create a file"));
        assert_eq!(extra_note(Some("  "), None), None);
        assert_eq!(extra_note(None, Some("x")), None);
    }

    #[test]
    fn inputs_become_readable_views() {
        use DiffLine::{Added as A, Removed as R};
        let s = |t: &str| t.to_string();
        let cases = [
            (
                "Bash",
                json!({"command": "touch made-by-claude.txt", "description": "Create a file"}),
                InputView::Command { command: s("touch made-by-claude.txt"), description: Some(s("Create a file")) },
            ),
            (
                "Edit",
                json!({"file_path": "src/lib.rs", "old_string": "a\nb", "new_string": "c"}),
                InputView::Diff { path: s("src/lib.rs"), lines: vec![R(s("a")), R(s("b")), A(s("c"))] },
            ),
            (
                "MultiEdit",
                json!({"file_path": "x.rs", "edits": [{"old_string": "1", "new_string": "2"}, {"old_string": "3", "new_string": "4"}]}),
                InputView::Diff {
                    path: s("x.rs"),
                    lines: vec![R(s("1")), A(s("2")), DiffLine::Separator, R(s("3")), A(s("4"))],
                },
            ),
            (
                "Write",
                json!({"file_path": "new.txt", "content": "hello\nworld\n"}),
                InputView::Diff { path: s("new.txt"), lines: vec![A(s("hello")), A(s("world"))] },
            ),
            ("WebFetch", json!({"url": "https://x"}), InputView::Json(s("{\n  \"url\": \"https://x\"\n}"))),
            // A known tool with an unexpected shape is still shown, as JSON.
            ("Bash", json!({"cmd": "ls"}), InputView::Json(s("{\n  \"cmd\": \"ls\"\n}"))),
            ("AskUserQuestion", json!({"questions": []}), InputView::Json(s("{\n  \"questions\": []\n}"))),
        ];
        for (tool, input, want) in cases {
            assert_eq!(input_view(tool, &input), want, "{tool} {input}");
        }
    }

    fn ask() -> Value {
        json!({"questions": [
            {"question": "Which database?", "header": "DB", "options": [
                {"label": "SQLite", "description": "one file"}, {"label": "Postgres"}]},
            {"question": "Which extras?", "multiSelect": true, "options": [
                {"label": "Metrics"}, {"label": "Tracing"}, {"label": "Backups"}]}
        ]})
    }

    #[test]
    fn questions_are_parsed_with_their_options() {
        let InputView::Questions(qs) = input_view(ASK_USER_QUESTION, &ask()) else { panic!() };
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0].header.as_deref(), Some("DB"));
        assert_eq!(qs[0].options[0].description.as_deref(), Some("one file"));
        assert!(!qs[0].multi_select);
        assert!(qs[1].multi_select);
        assert_eq!(qs[1].options.len(), 3);
    }

    #[test]
    fn answers_keep_the_input_and_join_labels_in_option_order() {
        let input = ask();
        let qs = questions(&input).unwrap();
        let mut chosen = vec![Vec::new(), Vec::new()];
        assert!(!all_answered(&qs, &chosen));
        choose(&mut chosen[0], 0, false);
        choose(&mut chosen[0], 1, false); // single select: replaces
        choose(&mut chosen[1], 2, true);
        choose(&mut chosen[1], 0, true);
        choose(&mut chosen[1], 1, true);
        choose(&mut chosen[1], 1, true); // multi select: toggles off
        assert!(all_answered(&qs, &chosen));
        let out = answers_input(&input, &qs, &chosen);
        assert_eq!(out["answers"], json!({"Which database?": "Postgres", "Which extras?": "Metrics, Backups"}));
        assert_eq!(out["questions"], input["questions"]);
    }
}

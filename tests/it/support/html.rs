//! Just enough HTML reading for tests: the first form and its inputs.

/// A form: its action and its named inputs with values.
pub struct Form {
    pub action: String,
    pub inputs: Vec<(String, String)>,
}

/// The first `<form>` of `html` with its `<input>` fields.
pub fn form(html: &str) -> Option<Form> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>").map(|e| start + e).unwrap_or(html.len());
    let body = &html[start..end];
    let tag_end = body.find('>')?;
    let action = attr(&body[..tag_end], "action").unwrap_or_default();
    let mut inputs = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..];
        let close = tag.find('>').unwrap_or(tag.len());
        let tag_text = &tag[..close];
        if let Some(name) = attr(tag_text, "name") {
            inputs.push((name, attr(tag_text, "value").unwrap_or_default()));
        }
        rest = &tag[close..];
    }
    Some(Form { action, inputs })
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

//! Full-text retrieval: documents cut into overlapping passages, indexed in memory
//! with tantivy (BM25), searched with weighted terms (never parsed query syntax, so
//! a question cannot inject operators).

use std::collections::HashSet;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, INDEXED, STORED,
    STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{doc, Index, IndexReader, TantivyDocument, Term};

use super::{snippet, Document, Source};

const PASSAGE_LINES: usize = 12;
const PASSAGE_STRIDE: usize = 8;
const ANALYZER: &str = "code_en";
/// A match in a document's name counts more than one in its text.
const TITLE_BOOST: f32 = 2.0;
/// A document's first passage (a source file's header comment) usually says what
/// the file is for: it gets a bonus when it matches at all.
const LEAD_BOOST: f32 = 1.0;
const LEAD: &str = "lead";
/// Documents an earlier turn was about weigh more than a title the question names.
const CONTEXT_BOOST: f32 = 3.0;
/// Passages searched before keeping each document's best: enough that the best
/// documents all show up even when one document has many matching passages.
const CANDIDATES: usize = 60;

/// A run of lines of one document.
#[derive(Debug, Clone)]
pub struct Passage {
    pub doc_id: String,
    pub title: String,
    /// 1-based, inclusive.
    pub first_line: usize,
    pub last_line: usize,
    pub text: String,
}

/// A passage that matched, with its BM25 score.
#[derive(Debug, Clone)]
pub struct Hit<'a> {
    pub passage: &'a Passage,
    pub score: f32,
}

impl Hit<'_> {
    /// This passage as an answer cites it.
    pub fn source(&self) -> Source {
        Source {
            id: self.passage.doc_id.clone(),
            title: self.passage.title.clone(),
            snippet: snippet(&self.passage.text),
            score: self.score,
        }
    }
}

pub struct DocumentIndex {
    passages: Vec<Passage>,
    /// Upper-cased document titles (file names without extension), for follow-ups.
    titles: HashSet<String>,
    engine: Engine,
}

/// The tantivy side of the index: cheap to clone (the reader is shared), so a
/// search can run on a blocking thread.
#[derive(Clone)]
struct Engine {
    reader: IndexReader,
    analyzer: TextAnalyzer,
    title_field: Field,
    body_field: Field,
    passage_field: Field,
    lead_field: Field,
}

/// Words that carry no subject in a question about code: English function words
/// and the question words people type ("what does … do", "tell me about …").
const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could",
    "describe", "did", "do", "does", "doing", "explain", "for", "from", "has", "have", "how", "i",
    "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "please",
    "show", "should", "such", "tell", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who", "why",
    "will", "with", "would", "you", "your",
];

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// A document's title: its file name without the extension.
pub fn title_of(doc_id: &str) -> &str {
    let name = doc_id.rsplit('/').next().unwrap_or(doc_id);
    name.split_once('.').map_or(name, |(stem, _)| stem)
}

fn passages_of(document: &Document) -> Vec<Passage> {
    let lines: Vec<&str> = document.text.lines().collect();
    let mut passages = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + PASSAGE_LINES).min(lines.len());
        let text = lines[start..end].join("\n");
        if !text.trim().is_empty() {
            passages.push(Passage {
                doc_id: document.id.clone(),
                title: title_of(&document.id).to_owned(),
                first_line: start + 1,
                last_line: end,
                text,
            });
        }
        if end >= lines.len() {
            return passages;
        }
        start += PASSAGE_STRIDE;
    }
}

impl DocumentIndex {
    pub fn build(documents: &[Document]) -> tantivy::Result<Self> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let title_field = schema.add_text_field("title", text.clone());
        let body_field = schema.add_text_field("body", text);
        let passage_field = schema.add_u64_field("passage", INDEXED | STORED);
        let lead_field = schema.add_text_field("lead", STRING);
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(ANALYZER, analyzer());

        let passages: Vec<Passage> = documents.iter().flat_map(passages_of).collect();
        // One thread and the minimum arena: the corpus is small and start-up matters.
        let mut writer = index.writer_with_num_threads(1, 15_000_000)?;
        for (n, passage) in passages.iter().enumerate() {
            let mut document = doc!(
                title_field => passage.title.as_str(),
                body_field => passage.text.as_str(),
                passage_field => n as u64,
            );
            if passage.first_line == 1 {
                document.add_text(lead_field, LEAD);
            }
            writer.add_document(document)?;
        }
        writer.commit()?;
        let reader = index.reader()?;
        let titles = documents
            .iter()
            .map(|d| title_of(&d.id).to_uppercase())
            .collect();
        Ok(Self {
            passages,
            titles,
            engine: Engine {
                reader,
                analyzer: analyzer(),
                title_field,
                body_field,
                passage_field,
                lead_field,
            },
        })
    }

    pub fn passage_count(&self) -> usize {
        self.passages.len()
    }

    /// Document titles named in `text` (whole words, any case), in order of appearance.
    pub fn titles_in(&self, text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_')) {
            let upper = word.to_uppercase();
            if self.titles.contains(&upper) && !found.contains(&upper) {
                found.push(upper);
            }
        }
        found
    }

    /// The best passage of each of the `documents` best-matching documents, best
    /// first (see [`Self::search`] for `context`).
    pub async fn best_passages(
        &self,
        question: &str,
        context: &[String],
        documents: usize,
    ) -> Vec<Hit<'_>> {
        let mut chosen: Vec<Hit<'_>> = Vec::new();
        for hit in self.search(question, context, CANDIDATES).await {
            if chosen.len() == documents {
                break;
            }
            if !chosen
                .iter()
                .any(|c| c.passage.doc_id == hit.passage.doc_id)
            {
                chosen.push(hit);
            }
        }
        chosen
    }

    /// The best passages for `question`. `context` names documents an earlier turn
    /// was about: it steers which documents match (their titles), while the
    /// question's own words pick the passages. The search runs on a blocking
    /// thread, so that a large corpus never stalls the requests sharing the async
    /// workers.
    pub async fn search(&self, question: &str, context: &[String], limit: usize) -> Vec<Hit<'_>> {
        let engine = self.engine.clone();
        let (question, context) = (question.to_owned(), context.join(" "));
        let found =
            tokio::task::spawn_blocking(move || engine.search(&question, &context, limit)).await;
        let found = found.unwrap_or_else(|error| {
            tracing::error!(%error, "a search of the documents failed");
            Vec::new()
        });
        found
            .into_iter()
            .filter_map(|(n, score)| {
                Some(Hit {
                    passage: self.passages.get(n)?,
                    score,
                })
            })
            .collect()
    }
}

impl Engine {
    /// (passage number, score) of the best `limit` passages, best first.
    fn search(&self, question: &str, context: &str, limit: usize) -> Vec<(usize, f32)> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut analyzer = self.analyzer.clone();
        let mut add = |text: &str, fields: &[(Field, f32)]| {
            let mut stream = analyzer.token_stream(text);
            while let Some(token) = stream.next() {
                for &(field, boost) in fields {
                    let term = Term::from_field_text(field, &token.text);
                    let query = TermQuery::new(term, IndexRecordOption::WithFreqs);
                    clauses.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(query), boost)),
                    ));
                }
            }
        };
        add(
            question,
            &[(self.body_field, 1.0), (self.title_field, TITLE_BOOST)],
        );
        add(context, &[(self.title_field, CONTEXT_BOOST)]);
        if clauses.is_empty() {
            return Vec::new();
        }
        let lead = TermQuery::new(
            Term::from_field_text(self.lead_field, LEAD),
            IndexRecordOption::Basic,
        );
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>,
            ),
            (
                Occur::Should,
                Box::new(BoostQuery::new(Box::new(lead), LEAD_BOOST)),
            ),
        ]);
        let searcher = self.reader.searcher();
        let Ok(top) = searcher.search(&query, &TopDocs::with_limit(limit)) else {
            return Vec::new();
        };
        top.into_iter()
            .filter_map(|(score, address)| {
                let stored: TantivyDocument = searcher.doc(address).ok()?;
                let n = stored.get_first(self.passage_field)?.as_u64()?;
                Some((n as usize, score))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, text: &str) -> Document {
        Document {
            id: id.into(),
            text: text.into(),
        }
    }

    #[test]
    fn passages_overlap_and_cover_every_line() {
        let text: String = (1..=20).map(|n| format!("line {n}\n")).collect();
        let passages = passages_of(&doc("a.txt", &text));
        let ranges: Vec<_> = passages
            .iter()
            .map(|p| (p.first_line, p.last_line))
            .collect();
        assert_eq!(ranges, [(1, 12), (9, 20)]);
    }

    #[tokio::test]
    async fn finds_the_document_that_matches_and_ignores_query_syntax() {
        let index = DocumentIndex::build(&[
            doc("programs/PAY.cbl", "posts loan payments to the master file"),
            doc(
                "programs/ESC.cbl",
                "escrow analysis for taxes and insurance",
            ),
        ])
        .unwrap();
        let hits = index
            .search("Which program handles ESCROW? ) AND NOT (\" body:", &[], 5)
            .await;
        assert_eq!(hits[0].passage.doc_id, "programs/ESC.cbl");
        assert!(index
            .search("what does the and of", &[], 5)
            .await
            .is_empty());
    }

    #[test]
    fn recognises_titles_as_whole_words() {
        let index = DocumentIndex::build(&[doc("programs/LONPF2.cbl", "x")]).unwrap();
        assert_eq!(index.titles_in("what does lonpf2 do?"), ["LONPF2"]);
        assert!(index.titles_in("LONPF22 or XLONPF2").is_empty());
    }
}

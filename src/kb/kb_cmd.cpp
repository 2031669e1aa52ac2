// `clawbot kb`: the command line of the knowledge base.
#include "kb/kb_cmd.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>

#include "client/cli.h"
#include "common/cli_error.h"
#include "kb/kb_remote.h"
#include "ops/http_fetch.h"

namespace clawbot::kb {

namespace {

using nlohmann::json;

struct KbOptions {
  RemoteOptions remote;
  std::string name;
  std::vector<std::string> paths;
  std::vector<std::string> words;  // search, ask: the question's words
  std::vector<std::string> include, exclude;
  std::string mode;  // bm25 | vector | hybrid; empty: hybrid when the knowledge base has embeddings
  std::size_t top_k = 5;
  std::size_t max_tokens = 256, overlap = 32;
  std::optional<double> threshold;
  std::string questions;  // eval: the JSONL file
  bool sync = false, no_embed = false, as_json = false, rerank = false, calibrate = false,
       save_threshold = false, misses = false, approximate_tokens = false;
};

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

std::string preview(std::string_view text, std::size_t max) {
  std::string out;
  for (const char c : text) out += c == '\n' ? ' ' : c;
  if (out.size() <= max) return out;
  std::size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xc0) == 0x80) --cut;
  return out.substr(0, cut) + "...";
}

SearchMode mode_for(const KbOptions& o, KnowledgeBase& kb) {
  if (!o.mode.empty()) {
    const auto mode = search_mode_from(o.mode);
    if (!mode) throw_invalid("--mode must be bm25, vector or hybrid, not '" + o.mode + "'");
    return *mode;
  }
  return kb.info().embedded_chunks > 0 ? SearchMode::hybrid : SearchMode::bm25;
}

// Retrieval as every command does it: the query embedded when the mode needs it, then reranked on request
// (from four times the candidates asked for).
std::vector<SearchHit> retrieve(KnowledgeBase& kb, Remote* remote, std::string_view query, SearchMode mode,
                                std::size_t top_k, bool rerank) {
  std::vector<float> vector;
  if (mode != SearchMode::bm25) vector = remote->embed_query(query, kb);
  SearchOptions options;
  options.mode = mode;
  options.top_k = rerank ? top_k * 4 : top_k;
  auto hits = kb.search(query, mode == SearchMode::bm25 ? nullptr : &vector, options);
  if (rerank) remote->rerank(query, hits, top_k);
  return hits;
}

double threshold_for(const KbOptions& o, KnowledgeBase& kb) {
  if (o.threshold) return *o.threshold;
  return kb.info().refusal_threshold.value_or(default_refusal_threshold);
}

// ---------------------------------------------------------------- create, info, list, rm

int run_create(const KbOptions& o) {
  KnowledgeBase kb = KnowledgeBase::create(kb_path(o.name));
  std::printf("created knowledge base %s at %s\n", o.name.c_str(), kb.path().c_str());
  return 0;
}

json info_json(const KbInfo& i) {
  return {{"name", i.name},
          {"path", i.path.string()},
          {"embedding_model", i.embedding_model},
          {"dimension", i.dimension},
          {"documents", i.documents},
          {"chunks", i.chunks},
          {"embedded_chunks", i.embedded_chunks},
          {"refusal_threshold", i.refusal_threshold ? json(*i.refusal_threshold) : json(nullptr)},
          {"file_bytes", i.file_bytes}};
}

int run_info(const KbOptions& o) {
  KnowledgeBase kb = KnowledgeBase::open(kb_path(o.name));
  const KbInfo i = kb.info();
  if (o.as_json) {
    std::printf("%s\n", info_json(i).dump(2).c_str());
    return 0;
  }
  std::printf("knowledge base %s (%s)\n", i.name.c_str(), i.path.c_str());
  std::printf("  documents        %lld\n  chunks           %lld\n  embedded chunks  %lld\n",
              static_cast<long long>(i.documents), static_cast<long long>(i.chunks),
              static_cast<long long>(i.embedded_chunks));
  std::printf("  embedding model  %s (%lld dimensions)\n",
              i.embedding_model.empty() ? "(none yet)" : i.embedding_model.c_str(),
              static_cast<long long>(i.dimension));
  std::printf("  refusal below    %.3f coverage%s\n", i.refusal_threshold.value_or(default_refusal_threshold),
              i.refusal_threshold ? " (calibrated)" : " (default)");
  std::printf("  file             %.1f MiB, %.0f bytes per chunk\n",
              static_cast<double>(i.file_bytes) / 1048576.0,
              i.chunks > 0 ? static_cast<double>(i.file_bytes) / static_cast<double>(i.chunks) : 0.0);
  for (const auto& s : kb.sources()) std::printf("  %s\n", s.c_str());
  return 0;
}

int run_list(const KbOptions& o) {
  const auto dir = kb_path("x").parent_path();
  json all = json::array();
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) {
    for (const auto& [name, path] : kb_files(dir)) {
      try {
        all.push_back(info_json(KnowledgeBase::open(path).info()));
      } catch (const ClawbotError& e) {
        all.push_back({{"name", name}, {"path", path.string()}, {"error", e.what()}});
      }
    }
  }
  if (o.as_json) {
    std::printf("%s\n", all.dump(2).c_str());
    return 0;
  }
  if (all.empty()) std::printf("no knowledge bases in %s (clawbot kb create NAME makes one)\n", dir.c_str());
  for (const auto& k : all) {
    if (k.contains("error")) {
      std::printf("%-20s %s\n", k["name"].get<std::string>().c_str(), k["error"].get<std::string>().c_str());
    } else {
      std::printf("%-20s %6lld documents %8lld chunks  %s\n", k["name"].get<std::string>().c_str(),
                  static_cast<long long>(k["documents"].get<std::int64_t>()),
                  static_cast<long long>(k["chunks"].get<std::int64_t>()),
                  k["embedding_model"].get<std::string>().c_str());
    }
  }
  return 0;
}

int run_rm(const KbOptions& o) {
  KnowledgeBase kb = KnowledgeBase::open(kb_path(o.name));
  int status = 0;
  for (const auto& p : o.paths) {
    std::error_code ec;
    const auto canonical = std::filesystem::weakly_canonical(p, ec);
    const std::string source = p.find("://") != std::string::npos || ec ? p : canonical.string();
    if (kb.remove(source)) {
      std::printf("removed %s\n", source.c_str());
    } else {
      std::fprintf(stderr, "clawbot kb rm: %s is not in knowledge base %s\n", source.c_str(), o.name.c_str());
      status = 1;
    }
  }
  return status;
}

// ---------------------------------------------------------------- add

std::string duration(double seconds) {
  const auto s = static_cast<long long>(std::lround(seconds));
  char out[32];
  std::snprintf(out, sizeof out, "%lld:%02lld", s / 60, s % 60);
  return out;
}

// Files and directories from disk; http(s):// pages fetched when their turn comes (the kind from the URL's
// extension, else HTML).
std::vector<SourceDocument> sources_of(const KbOptions& o) {
  std::vector<std::string> files;
  std::vector<SourceDocument> pages;
  for (const auto& p : o.paths) {
    if (!p.starts_with("http://") && !p.starts_with("https://")) {
      files.push_back(p);
      continue;
    }
    const std::string bare = p.substr(0, p.find_first_of("?#"));
    const DocKind kind = kind_for_path(bare).value_or(DocKind::html);
    pages.push_back({p, kind, [p] { return ops::http_get_range(p, 0, std::nullopt, 64u << 20).body; }});
  }
  auto documents = collect_files(files, o.include, o.exclude);
  for (auto& page : pages) documents.push_back(std::move(page));
  return documents;
}

int run_add(const KbOptions& o) {
  KnowledgeBase kb = KnowledgeBase::open(kb_path(o.name));
  const auto documents = sources_of(o);
  std::unique_ptr<Remote> remote;
  if (!o.no_embed || !o.approximate_tokens) remote = std::make_unique<Remote>(o.remote);
  EmbedFunction embed;
  const std::string recorded_model = kb.info().embedding_model;
  if (!o.no_embed)
    embed = [&](std::span<const std::string> inputs) { return remote->embed(inputs, recorded_model); };
  TokenCounter count = approximate_tokens;
  if (!o.approximate_tokens) count = [&](std::string_view text) { return remote->count_tokens(text); };

  IngestOptions options;
  options.chunking = {o.max_tokens, o.overlap};
  options.sync = o.sync;
  const bool tty = isatty(STDERR_FILENO) != 0;
  std::size_t last_done = 0;
  const auto progress = [&](const IngestProgress& p) {
    if (tty) {
      std::string eta = "?";
      if (p.documents_done > 0 && p.elapsed_s > 0)
        eta = duration(p.elapsed_s / static_cast<double>(p.documents_done) *
                       static_cast<double>(p.documents_total - p.documents_done));
      std::fprintf(stderr, "\r\x1b[Kkb add: %zu/%zu documents, %zu chunks embedded, ETA %s  %s",
                   p.documents_done, p.documents_total, p.chunks_done, eta.c_str(),
                   preview(p.current, 50).c_str());
    } else if (p.documents_done > last_done) {
      // Not a terminal (a log, a test): a line per document done.
      std::fprintf(stderr, "kb add: %zu/%zu documents, %zu chunks embedded\n", p.documents_done,
                   p.documents_total, p.chunks_done);
    }
    last_done = p.documents_done;
  };
  const IngestReport r = kb.ingest(documents, options, count, embed, progress);
  if (tty) std::fprintf(stderr, "\r\x1b[K");
  const KbInfo info = kb.info();
  if (o.as_json) {
    const json out = {
        {"added", r.added},
        {"updated", r.updated},
        {"unchanged", r.unchanged},
        {"removed", r.removed},
        {"failed", r.failed},
        {"failures", r.failures},
        {"chunks_stored", r.chunks_stored},
        {"chunks_embedded", r.chunks_embedded},
        {"seconds", r.seconds},
        {"tokenizer", o.approximate_tokens || !remote->tokenizer_is_remote() ? "approximate" : "model"},
        {"kb", info_json(info)}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf(
        "%s: %zu added, %zu updated, %zu unchanged, %zu removed, %zu failed; %zu chunks stored, %zu embedded "
        "in %.1f s (%.0f chunks/s)\n",
        info.name.c_str(), r.added, r.updated, r.unchanged, r.removed, r.failed, r.chunks_stored,
        r.chunks_embedded, r.seconds, r.seconds > 0 ? static_cast<double>(r.chunks_stored) / r.seconds : 0.0);
    for (const auto& f : r.failures) std::fprintf(stderr, "clawbot kb add: %s\n", f.c_str());
  }
  return r.failed > 0 ? 1 : 0;
}

// ---------------------------------------------------------------- search

int run_search(const KbOptions& o) {
  KnowledgeBase kb = KnowledgeBase::open(kb_path(o.name));
  const std::string query = joined(o.words);
  if (query.empty()) throw_invalid("nothing to search for: give the query after the knowledge base's name");
  const SearchMode mode = mode_for(o, kb);
  std::unique_ptr<Remote> remote;
  if (mode != SearchMode::bm25 || o.rerank) remote = std::make_unique<Remote>(o.remote);
  const auto hits = retrieve(kb, remote.get(), query, mode, o.top_k, o.rerank);
  const double cover = kb.coverage(query, hits);
  if (o.as_json) {
    json results = json::array();
    for (std::size_t i = 0; i < hits.size(); ++i) results.push_back(hit_json(hits[i], i + 1));
    const json out = {{"kb", kb.info().name}, {"query", query},    {"mode", search_mode_name(mode)},
                      {"reranked", o.rerank},     {"coverage", cover}, {"results", std::move(results)}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  if (hits.empty()) std::printf("no passage matches\n");
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const auto& h = hits[i];
    std::string scores = "score " + std::to_string(h.score);
    if (h.bm25) scores += ", bm25 " + std::to_string(*h.bm25);
    if (h.cosine) scores += ", cosine " + std::to_string(*h.cosine);
    if (h.rerank) scores += ", rerank " + std::to_string(*h.rerank);
    std::printf("%zu. %s\n   %s\n   %s\n", i + 1, cited_source(h).c_str(), scores.c_str(),
                preview(h.text, 200).c_str());
  }
  std::printf("(query coverage %.2f; answers are refused below %.2f)\n", cover, threshold_for(o, kb));
  return 0;
}

// ---------------------------------------------------------------- ask, chat

// The passages that fit the chat model's context beside the question and the answer: the best first, the
// last one cut when it alone is too long. Tokens are estimated at one per 2 bytes (no tokenizer of the chat
// model is at hand; small vocabularies average about that on English).
std::vector<SearchHit> fit_passages(std::vector<SearchHit> hits, std::int64_t context,
                                    std::int64_t answer_tokens, std::size_t question_bytes) {
  if (context <= 0) return hits;
  const auto budget_bytes = static_cast<std::int64_t>((context - answer_tokens) * 2) -
                            static_cast<std::int64_t>(question_bytes) - 700;  // the rules and the template
  std::int64_t used = 0;
  std::vector<SearchHit> out;
  for (auto& h : hits) {
    const auto bytes = static_cast<std::int64_t>(h.text.size() + h.heading_path.size() + 8);
    if (used + bytes > budget_bytes) {
      if (out.empty() && budget_bytes - used > 200) {
        h.text = preview(h.text, static_cast<std::size_t>(budget_bytes - used - h.heading_path.size() - 8));
        out.push_back(std::move(h));
      }
      break;
    }
    used += bytes;
    out.push_back(std::move(h));
  }
  return out;
}

struct Answer {
  std::string text;
  bool refused = false;
  double coverage = 0;
  std::vector<SearchHit> passages;
  std::optional<client::Failure> failure;
};

// Retrieves for `retrieval_query`, refuses below the threshold, else asks the chat model with the passages
// and `history` (earlier turns), streaming the answer to `on_text`.
Answer answer(KnowledgeBase& kb, Remote& remote, const KbOptions& o, std::string_view question,
              std::string_view retrieval_query, const std::vector<client::ChatMessage>& history,
              const std::function<void(std::string_view)>& on_text) {
  Answer a;
  const SearchMode mode = mode_for(o, kb);
  auto hits = retrieve(kb, &remote, retrieval_query, mode, o.top_k, o.rerank);
  a.coverage = kb.coverage(retrieval_query, hits);
  if (hits.empty() || a.coverage < threshold_for(o, kb)) {
    a.refused = true;
    a.passages = std::move(hits);
    a.text = refusal_text(a.passages);
    on_text(a.text);
    return a;
  }
  auto& chat = remote.chat_client();
  const std::int64_t context = chat.context_tokens();
  const std::int64_t answer_tokens =
      std::min<std::int64_t>(remote.config().max_tokens, context > 0 ? context / 4 : 1024);
  a.passages = fit_passages(std::move(hits), context, answer_tokens, question.size());
  client::ChatRequest request;
  request.messages.push_back({"system", grounded_system_prompt(a.passages)});
  for (const auto& m : history) request.messages.push_back(m);
  request.messages.push_back({"user", std::string(question)});
  request.max_tokens = answer_tokens;
  chat.set_interruptible(true);
  const client::ChatOutcome out = chat.chat(request, [&](std::string_view piece) {
    a.text += piece;
    on_text(piece);
  });
  a.failure = out.failure;
  return a;
}

int run_ask(const KbOptions& o) {
  KnowledgeBase kb = KnowledgeBase::open(kb_path(o.name));
  const std::string question = joined(o.words);
  if (question.empty()) throw_invalid("nothing to ask: give the question after the knowledge base's name");
  Remote remote(o.remote);
  bool newline = true;
  const Answer a = answer(kb, remote, o, question, question, {}, [&](std::string_view piece) {
    if (o.as_json) return;
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    newline = piece.ends_with('\n');
  });
  if (o.as_json) {
    const json out = {{"kb", kb.info().name},
                      {"question", question},
                      {"answer", a.text},
                      {"refused", a.refused},
                      {"coverage", a.coverage},
                      {"threshold", threshold_for(o, kb)},
                      {"citations", a.refused ? json::array() : citations_json(a.passages, true)},
                      {"nearest", a.refused ? citations_json(a.passages, true) : json::array()},
                      {"error", a.failure ? json(a.failure->message) : json(nullptr)}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    if (!newline) std::fputc('\n', stdout);
    if (!a.refused && !a.passages.empty()) std::printf("\nSources:\n%s", citation_lines(a.passages).c_str());
  }
  std::fflush(stdout);
  if (a.failure)
    return cli_error("clawbot kb ask", a.failure->message,
                     a.failure->kind == client::FailureKind::cancelled ? 130 : 1);
  return 0;
}

// A conversation on stdin, a question a line: follow-ups are made to stand alone before retrieval, and the
// earlier turns go to the chat model with the passages.
int run_chat(const KbOptions& o) {
  KnowledgeBase kb = KnowledgeBase::open(kb_path(o.name));
  Remote remote(o.remote);
  const bool interactive = isatty(STDIN_FILENO) != 0;
  std::vector<std::string> questions;
  std::vector<client::ChatMessage> history;
  std::string line;
  while (true) {
    if (interactive) std::fputs("> ", stdout), std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/quit" || line == "/exit") break;
    const std::string standalone = standalone_question(questions, line);
    if (standalone != line && !o.as_json) std::fprintf(stderr, "(searching for: %s)\n", standalone.c_str());
    const Answer a = answer(kb, remote, o, line, standalone, history, [&](std::string_view piece) {
      if (!o.as_json) std::fwrite(piece.data(), 1, piece.size(), stdout), std::fflush(stdout);
    });
    if (o.as_json) {
      const json turn = {{"question", line},
                         {"retrieval_query", standalone},
                         {"answer", a.text},
                         {"refused", a.refused},
                         {"coverage", a.coverage},
                         {"citations", a.refused ? json::array() : citations_json(a.passages, true)}};
      std::printf("%s\n", turn.dump().c_str());
    } else {
      std::printf("\n");
      if (!a.refused && !a.passages.empty()) std::printf("Sources:\n%s", citation_lines(a.passages).c_str());
      std::printf("\n");
    }
    std::fflush(stdout);
    if (a.failure) return cli_error("clawbot kb chat", a.failure->message, 1);
    questions.push_back(line);
    history.push_back({"user", line});
    history.push_back({"assistant", a.text});
    if (history.size() > 8) history.erase(history.begin(), history.begin() + 2);
  }
  return 0;
}

// ---------------------------------------------------------------- eval

int run_eval(const KbOptions& o) {
  KnowledgeBase kb = KnowledgeBase::open(kb_path(o.name));
  std::ifstream in(o.questions, std::ios::binary);
  if (!in) throw_invalid(o.questions + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  const auto questions = parse_eval_set(text.str(), o.questions);
  const SearchMode mode = o.mode.empty() ? SearchMode::bm25 : mode_for(o, kb);
  std::unique_ptr<Remote> remote;
  if (mode != SearchMode::bm25 || o.rerank) remote = std::make_unique<Remote>(o.remote);
  EvalRun run;
  for (const auto& q : questions) {
    run.hits.push_back(
        retrieve(kb, remote.get(), q.question, mode, std::max<std::size_t>(o.top_k, 10), o.rerank));
    run.coverage.push_back(kb.coverage(q.question, run.hits.back()));
  }
  double threshold = threshold_for(o, kb);
  std::optional<double> calibrated;
  if (o.calibrate || o.save_threshold) {
    calibrated = calibrate_threshold(questions, run, 0.9);
    if (calibrated) threshold = *calibrated;
    if (o.save_threshold && calibrated) kb.set_refusal_threshold(*calibrated);
  }
  const EvalFigures f = score_eval(questions, run, threshold);
  if (o.as_json) {
    const json out = {{"kb", kb.info().name},
                      {"questions", questions.size()},
                      {"answerable", f.answerable},
                      {"unanswerable", f.unanswerable},
                      {"mode", search_mode_name(mode)},
                      {"reranked", o.rerank},
                      {"hit_at_1", f.hit_at_1},
                      {"hit_at_5", f.hit_at_5},
                      {"mrr", f.mrr},
                      {"threshold", f.threshold},
                      {"calibrated", calibrated.has_value()},
                      {"refusal_precision", f.refusal_precision},
                      {"refusal_recall", f.refusal_recall},
                      {"wrongly_refused", f.wrongly_refused},
                      {"misses", f.misses}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("kb eval %s: %zu questions (%zu answerable, %zu not in the documents), %s retrieval%s\n",
              kb.info().name.c_str(), questions.size(), f.answerable, f.unanswerable,
              std::string(search_mode_name(mode)).c_str(), o.rerank ? " + rerank" : "");
  std::printf(
      "| hit@1 | hit@5 | MRR   | not-in-KB precision | not-in-KB recall | answerable refused | threshold "
      "|\n");
  std::printf("| %.3f | %.3f | %.3f | %.3f               | %.3f            | %-18zu | %.3f%s |\n", f.hit_at_1,
              f.hit_at_5, f.mrr, f.refusal_precision, f.refusal_recall, f.wrongly_refused, f.threshold,
              calibrated ? " (calibrated)" : "");
  if (o.calibrate && !calibrated) std::printf("no threshold reaches 0.9 precision on these questions\n");
  if (o.save_threshold && calibrated)
    std::printf("saved threshold %.3f in %s\n", *calibrated, kb.path().c_str());
  if (o.misses)
    for (const auto& m : f.misses) std::printf("miss: %s\n", m.c_str());
  return 0;
}

// Runs a command, ending its errors as every command does: a message naming the command, status 2 for a
// configuration that cannot work, 1 for the rest.
int guarded(const std::string& command, const std::function<int()>& run) {
  try {
    return run();
  } catch (const client::ConfigError& e) {
    return cli_error(command, e.what(), 2);
  } catch (const ClawbotError& e) {
    return cli_error(command, e.what(), 1);
  }
}

}  // namespace

std::function<std::optional<int>()> add_kb_command(CLI::App& app) {
  // `clawbot chat --kb NAME`: the knowledge base's chat, with chat's flags.
  client::set_chat_kb_runner([](const client::ChatOptions& chat) {
    KbOptions o;
    o.name = chat.kb;
    o.remote.search = chat.search;
    o.remote.overrides = chat.overrides;
    return guarded("clawbot chat", [&] { return run_chat(o); });
  });

  auto o = std::make_shared<KbOptions>();
  auto* kb = app.add_subcommand("kb", "Knowledge base: add documents, search them, answers that cite them");
  kb->require_subcommand(1);

  const auto name = [&](CLI::App* cmd) {
    cmd->add_option(
           "name", o->name,
           "Knowledge base: a name (in ${XDG_DATA_HOME:-~/.local/share}/clawbot/kb/) or a path ending in .kb")
        ->required();
  };
  const auto remote_flags = [&](CLI::App* cmd) {
    client::add_client_flags(*cmd, o->remote.search, o->remote.overrides);
    cmd->add_option("--embed-endpoint", o->remote.embed_endpoint,
                    "Embeddings endpoint (default: the endpoint)");
    cmd->add_option("--embed-model", o->remote.embed_model,
                    "Embedding model to ask for (default: the endpoint's)");
  };
  const auto retrieval_flags = [&](CLI::App* cmd) {
    cmd->add_option("--mode", o->mode,
                    "bm25, vector or hybrid (default: hybrid when the knowledge base has embeddings)");
    cmd->add_option("-k,--top-k", o->top_k, "Passages to return")
        ->capture_default_str()
        ->check(CLI::Range(1, 100));
    cmd->add_flag("--rerank", o->rerank, "Rerank the candidates with a reranking model (/v1/rerank)");
    cmd->add_option("--rerank-endpoint", o->remote.rerank_endpoint,
                    "Reranking endpoint (default: the embeddings one)");
    cmd->add_option("--rerank-model", o->remote.rerank_model, "Reranking model to ask for");
  };

  auto* create = kb->add_subcommand("create", "Create an empty knowledge base");
  name(create);
  auto* add = kb->add_subcommand(
      "add", "Add or update documents (files, directories): only what changed is embedded again");
  name(add);
  add->add_option("paths", o->paths, "Files and directories (.txt .md .html .pdf .docx), http(s):// pages")
      ->required();
  add->add_option("--include", o->include,
                  "Only files matching this glob (repeatable; '*.md', 'docs/*.html')");
  add->add_option("--exclude", o->exclude, "Leave out files matching this glob (repeatable)");
  add->add_flag("--sync", o->sync, "Remove the documents that are no longer among these paths");
  add->add_flag("--no-embed", o->no_embed, "No embeddings: full-text search only (no endpoint needed)");
  add->add_flag("--approximate-tokens", o->approximate_tokens,
                "Estimate chunk sizes (3 bytes a token) instead of asking the embedding model's /tokenize");
  add->add_option("--chunk-tokens", o->max_tokens, "Tokens per chunk, heading path included")
      ->capture_default_str()
      ->check(CLI::Range(16, 8192));
  add->add_option("--overlap", o->overlap, "Tokens repeated from the previous chunk of a section")
      ->capture_default_str();
  add->add_flag("--json", o->as_json, "Print the report as JSON");
  remote_flags(add);

  auto* search =
      kb->add_subcommand("search", "The passages that best match a query, with scores and sources");
  name(search);
  search->add_option("query", o->words, "The query (the words are joined)")->required();
  search->add_flag("--json", o->as_json, "Print JSON");
  retrieval_flags(search);
  remote_flags(search);

  auto* ask = kb->add_subcommand(
      "ask", "Answer from the knowledge base with numbered citations, or say it has no answer");
  name(ask);
  ask->add_option("question", o->words, "The question (the words are joined)")->required();
  ask->add_option("--threshold", o->threshold,
                  "Refuse when the query coverage is below this (default: calibrated)");
  ask->add_flag("--json", o->as_json, "Print JSON (answer, refused, citations)");
  retrieval_flags(ask);
  remote_flags(ask);

  auto* chat =
      kb->add_subcommand("chat", "Questions a line on stdin; follow-ups are read with the earlier questions");
  name(chat);
  chat->add_option("--threshold", o->threshold, "Refuse when the query coverage is below this");
  chat->add_flag("--json", o->as_json, "One JSON object a turn");
  retrieval_flags(chat);
  remote_flags(chat);

  auto* eval =
      kb->add_subcommand("eval", "hit@1, hit@5, MRR and not-in-KB precision on a question set (JSONL)");
  name(eval);
  eval->add_option("questions", o->questions, "JSONL: {\"question\": ..., \"expected\": \"7.12\" or null}")
      ->required();
  eval->add_option("--mode", o->mode, "bm25 (default), vector or hybrid");
  eval->add_flag("--rerank", o->rerank, "Rerank with a reranking model");
  eval->add_option("--threshold", o->threshold, "Refusal threshold to score (default: the knowledge base's)");
  eval->add_flag("--calibrate", o->calibrate, "Find the threshold with the best recall at precision >= 0.9");
  eval->add_flag("--save-threshold", o->save_threshold,
                 "Calibrate and store the threshold in the knowledge base");
  eval->add_flag("--misses", o->misses, "List the questions whose section was not in the top 5");
  eval->add_flag("--json", o->as_json, "Print JSON");
  remote_flags(eval);

  auto* info =
      kb->add_subcommand("info", "Counts, embedding model, threshold and documents of a knowledge base");
  name(info);
  info->add_flag("--json", o->as_json, "Print JSON");
  auto* list =
      kb->add_subcommand("list", "The knowledge bases in ${XDG_DATA_HOME:-~/.local/share}/clawbot/kb/");
  list->add_flag("--json", o->as_json, "Print JSON");
  auto* rm = kb->add_subcommand("rm", "Remove documents from a knowledge base");
  name(rm);
  rm->add_option("sources", o->paths, "The documents' paths or URLs")->required();

  return [=]() -> std::optional<int> {
    if (!kb->parsed()) return std::nullopt;
    const std::string action = kb->get_subcommands().at(0)->get_name();
    return guarded("clawbot kb " + action, [&] {
      if (action == "create") return run_create(*o);
      if (action == "add") return run_add(*o);
      if (action == "search") return run_search(*o);
      if (action == "ask") return run_ask(*o);
      if (action == "chat") return run_chat(*o);
      if (action == "eval") return run_eval(*o);
      if (action == "info") return run_info(*o);
      if (action == "list") return run_list(*o);
      return run_rm(*o);
    });
  };
}

}  // namespace clawbot::kb

"""Label Studio over its REST API: projects, tasks and annotations for human review.

Plain ``urllib`` against the documented endpoints (``/api/projects``, ``/api/projects/{id}/import``,
``/api/tasks``, ``/api/users``) rather than ``label-studio-sdk``, whose dependencies (OpenCV,
pandas, nltk, a code generator) do not belong in a data pipeline's environment.

The API token is read by the caller from an environment variable and only ever travels in the
``Authorization`` header: it is never stored, logged or put in an error message. A legacy
token is sent as ``Token <key>``; a personal access token (a JWT) is exchanged for an access
token first, as Label Studio documents.

One labeling config per kind (``LABEL_CONFIGS``), and for each the task data it shows
(``task_data``) and how an annotation's result becomes a judgment (``parse_annotation``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from warehouse.errors import SynthrankError

LISTWISE_CONFIG = """<View>
  <Header value="Query"/>
  <Text name="query" value="$query"/>
  <Header value="Which passages are relevant to the query? (tick every relevant one)"/>
  <Choices name="relevant" toName="query" choice="multiple" value="$relevance_options"/>
  <Header value="Drag the most relevant passages into the first column, best first"/>
  <List name="passages" value="$passages" title="Passages"/>
  <Ranker name="ranking" toName="passages">
    <Bucket name="top" title="Top passages, best first"/>
    <Bucket name="rest" title="Others" default="true"/>
  </Ranker>
</View>"""

NEGATIVES_CONFIG = """<View>
  <Header value="Query"/>
  <Text name="query" value="$query"/>
  <Header value="Passages known to be relevant"/>
  <Text name="positives" value="$positives"/>
  <Header value="Candidate"/>
  <Text name="candidate" value="$candidate"/>
  <Choices name="relevance" toName="candidate" choice="single" required="true">
    <Choice value="relevant"/>
    <Choice value="not relevant"/>
  </Choices>
</View>"""

MIXED_COT_CONFIG = """<View>
  <Header value="Question"/>
  <Text name="question" value="$question"/>
  <Header value="Reasoning"/>
  <Text name="reasoning" value="$reasoning"/>
  <Header value="Answer"/>
  <Text name="answer" value="$answer"/>
  <Header value="Reference answers"/>
  <Text name="references" value="$references"/>
  <Choices name="answer_verdict" toName="answer" choice="single" required="true">
    <Choice value="correct"/>
    <Choice value="incorrect"/>
  </Choices>
  <Choices name="reasoning_verdict" toName="reasoning" choice="single" required="true">
    <Choice value="acceptable"/>
    <Choice value="unacceptable"/>
  </Choices>
</View>"""

LABEL_CONFIGS = {"listwise": LISTWISE_CONFIG, "negatives": NEGATIVES_CONFIG, "mixed_cot": MIXED_COT_CONFIG}
_CONTROLS = {"listwise": {"relevant", "ranking"}, "negatives": {"relevance"},
             "mixed_cot": {"answer_verdict", "reasoning_verdict"}}
_PAGE = 100


class LabelStudioError(SynthrankError):
    """The server cannot be reached, refused the token, or answered something unusable."""


class AnnotationProblem(ValueError):
    """An annotation that cannot become a judgment (reported and skipped, never stored)."""


class LabelStudio:
    """A Label Studio server at ``url``, used with ``token`` (named ``token_name`` in errors)."""

    def __init__(self, url: str, token: str, token_name: str = "the token", timeout_s: float = 30.0):
        self.url = server_url(url)
        self.token_name = token_name
        self.timeout_s = timeout_s
        self._authorization = self._authorize(token)

    def _authorize(self, token: str) -> str:
        if token.count(".") != 2:  # a legacy API token
            return f"Token {token}"
        self._authorization = ""
        access = self._request("POST", "/api/token/refresh/", {"refresh": token}, auth=False)["access"]
        return f"Bearer {access}"

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        request = urllib.request.Request(
            self.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     **({"Authorization": self._authorization} if auth else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(method, path, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LabelStudioError(f"cannot reach Label Studio at {self.url} ({reason}); start it with "
                                   "`label-studio start` or check --to/--from") from None
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise LabelStudioError(f"{self.url}{path} answered something that is not JSON: is this a "
                                   "Label Studio server?") from None

    def _http_error(self, method: str, path: str, exc: urllib.error.HTTPError) -> LabelStudioError:
        if exc.code in (401, 403):
            return LabelStudioError(f"Label Studio at {self.url} refused {self.token_name} (HTTP {exc.code}): "
                                    "use the API token of a user of this server (Account & Settings)")
        try:
            answer = json.loads(exc.read() or b"{}")
            detail = answer.get("validation_errors") or answer.get("detail") or ""
        except (ValueError, AttributeError):
            detail = ""
        return LabelStudioError(f"Label Studio at {self.url} answered HTTP {exc.code} to {method} "
                                f"{path.split('?')[0]}{': ' + str(detail)[:300] if detail else ''}")

    # --- the endpoints used ----------------------------------------------------------------

    def whoami(self) -> dict:
        """The user the token belongs to (checks the server and the token at once)."""
        return self._request("GET", "/api/current-user/whoami")

    def projects(self) -> list[dict]:
        found, page = [], 1
        while True:
            answer = self._request("GET", f"/api/projects?page={page}&page_size={_PAGE}")
            found += answer["results"]
            if not answer.get("next"):
                return found
            page += 1

    def create_project(self, title: str, description: str, label_config: str) -> dict:
        return self._request("POST", "/api/projects", {"title": title, "description": description,
                                                       "label_config": label_config})

    def project(self, project_id: int) -> dict:
        return self._request("GET", f"/api/projects/{project_id}")

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Create tasks (each ``{"data": {...}}``); returns their ids in the same order."""
        answer = self._request("POST", f"/api/projects/{project_id}/import?return_task_ids=true", tasks)
        return list(answer["task_ids"])

    def tasks(self, project_id: int) -> list[dict]:
        """Every task of a project with its annotations."""
        found, page = [], 1
        while True:
            answer = self._request("GET", f"/api/tasks?project={project_id}&page={page}&page_size={_PAGE}&fields=all")
            found += answer["tasks"]
            if len(found) >= answer["total"] or not answer["tasks"]:
                return found
            page += 1

    def users(self) -> dict[int, str]:
        """user id -> email."""
        answer = self._request("GET", "/api/users")
        return {user["id"]: user.get("email") or user.get("username") or "" for user in answer}

    def annotate(self, task_id: int, result: list[dict]) -> dict:
        """Submit an annotation as the token's user would from the labeling page."""
        return self._request("POST", f"/api/tasks/{task_id}/annotations", {"result": result})


def server_url(url: str) -> str:
    """``scheme://host[:port][/path]`` without credentials or a trailing slash: what is stored."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LabelStudioError(f"{url!r} is not an http(s) URL of a Label Studio server")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{host}{parts.path.rstrip('/')}"


def same_config(a: str, b: str) -> bool:
    """Whether two labeling configs are the same, whitespace aside."""
    return " ".join(a.split()) == " ".join(b.split())


# --- what a task shows, and what an annotation says ------------------------------------------


def task_data(kind: str, row: dict, negative: dict | None, texts: dict[str, str]) -> dict:
    """The data a task of ``kind`` shows (``texts``: docid -> passage text, for listwise)."""
    if kind == "listwise":
        docids = row["initial_list"]
        return {"query": row["query"],
                "relevance_options": [{"value": d, "html": f"[{i}] {d}"} for i, d in enumerate(docids, 1)],
                "passages": [{"id": d, "title": f"[{i}] {d}", "body": texts.get(d, "")}
                             for i, d in enumerate(docids, 1)]}
    if kind == "negatives":
        positives = "\n\n".join(f"- {p['text']}" for p in row["positives"][:3]
                                if p.get("label_source") == "qrels") or "(none)"
        return {"query": row["query"], "positives": positives, "candidate": negative["text"],
                "candidate_docid": negative["docid"]}
    return {"question": row["question"], "reasoning": row.get("reasoning") or "", "answer": row.get("answer") or "",
            "references": "\n".join(row.get("references") or []) or "(none)"}


def parse_annotation(kind: str, result: list[dict], task: dict) -> dict:
    """The judgment an annotation's ``result`` holds, or :class:`AnnotationProblem` saying why not.

    listwise: ``{"relevant": [docids], "ranking": [docids, best first]}``; negatives:
    ``{"verdict": "relevant" | "not_relevant"}``; mixed_cot: ``{"answer": "correct" |
    "incorrect", "reasoning": "acceptable" | "unacceptable"}``.
    """
    values: dict[str, dict] = {}
    for region in result:
        name = region.get("from_name")
        if name not in _CONTROLS[kind]:
            raise AnnotationProblem(f"answers {name!r}, which synthrank's {kind} config does not have")
        values[name] = region.get("value") or {}
    if kind == "listwise":
        return _listwise_judgment(values, [p["id"] for p in task["passages"]])
    if kind == "negatives":
        return {"verdict": _single_choice(values, "relevance", {"relevant", "not relevant"}).replace(" ", "_")}
    return {"answer": _single_choice(values, "answer_verdict", {"correct", "incorrect"}),
            "reasoning": _single_choice(values, "reasoning_verdict", {"acceptable", "unacceptable"})}


def _listwise_judgment(values: dict[str, dict], docids: list[str]) -> dict:
    relevant = list(values.get("relevant", {}).get("choices", []))
    ranking = list((values.get("ranking", {}).get("ranker") or {}).get("top", []))
    for docid in relevant + ranking:
        if docid not in docids:
            raise AnnotationProblem(f"names passage {docid!r}, which is not in the task")
    if len(set(ranking)) != len(ranking):
        raise AnnotationProblem("ranks a passage twice")
    return {"relevant": [d for d in docids if d in set(relevant)], "ranking": ranking}


def _single_choice(values: dict[str, dict], name: str, allowed: set[str]) -> str:
    choices = values.get(name, {}).get("choices", [])
    if len(choices) != 1 or choices[0] not in allowed:
        raise AnnotationProblem(f"{name}: expected one of {sorted(allowed)}, got {choices}")
    return choices[0]

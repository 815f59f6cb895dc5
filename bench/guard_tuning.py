"""Semantic-cache matcher tuning: cosine threshold alone vs cosine threshold + precision guard.

What it measures
    A labelled set of text pairs (default: the fow-cache package's pairs.jsonl dev set, 300
    should-hit pairs - paraphrase, near_repeat - and 300 traps - negation, entity_swap,
    number_date, scope). A pair is *served* when the matcher would answer the second text from
    the first one's cache entry: cosine(a, b) >= T and, with the guard, Guard.check(a, b) is
    None. It reports

    - for each threshold T: served % of should-hits and wrong % (= traps served), cosine alone
      and cosine + guard;
    - at the threshold (default: facilitair.cache.guard.RECOMMENDED_THRESHOLD): per-category
      counts, and which rule refused how many pairs;
    - an out-of-sample check: 200 random stratified half splits; on one half a threshold is
      chosen by a rule ("lowest T whose wrong rate is <= target", and the same with half the
      budget as a safety margin), the other half reports served/wrong at that T; and the
      served/wrong of the fixed default T on the held-out halves;
    - distractors: pairs of texts from *different* dev items whose cosine is >= T, and how many
      the guard lets through: what a real cache full of entries serves wrongly (noisy: some of
      those items really are the same question);
    - the same figures on two small hand-written sets: code-assistant tasks written before the
      rules were tuned (CODE_PAIRS; its misses were looked at during tuning, so it is only
      partly independent) and a mixed set written after the second tuning round and never
      tuned on (FRESH_PAIRS, the cleanest out-of-sample figure here);
    - the guard's own cost per check (features cached per text, as in the cache).

    The embeddings (all-MiniLM-L6-v2 int8, the cache's local embedder) are computed once and
    kept in --cache-dir, keyed by a hash of the texts, so re-runs after a rule change take a
    second or two.

Run it from the repository root:

    .venv/bin/python bench/guard_tuning.py
    .venv/bin/python bench/guard_tuning.py --threshold 0.80 --show 20

It prints its figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import json
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facilitair.cache.guard import RECOMMENDED_THRESHOLD, RULES, Guard

# Hand-written code-assistant pairs (cached text, query, same answer?, category), written before
# the guard's word lists were tuned on the dev set. Its misses were looked at while tuning, so it
# is only partly independent; FRESH_PAIRS below is the untouched one.
CODE_PAIRS: list[tuple[str, str, bool, str]] = [
    # should-hit: near repeats (typos, fillers, case, punctuation)
    (
        "Build a REST API with JWT authentication in FastAPI",
        "build a REST API with JWT authentification in FastAPI",
        True,
        "near_repeat",
    ),
    (
        "Write a Python script that renames all files in a folder",
        "hey, write a python script that renames all the files in a folder",
        True,
        "near_repeat",
    ),
    (
        "Create a React component that shows a paginated table",
        "Create a React componnet that shows a paginated table.",
        True,
        "near_repeat",
    ),
    (
        "Add unit tests for the payment service",
        "please add unit tests for the payment service",
        True,
        "near_repeat",
    ),
    (
        "How do I read a CSV file with pandas?",
        "how do i read a csv file with pandas",
        True,
        "near_repeat",
    ),
    (
        "Write a Dockerfile for a Node.js app",
        "Write a Dockerfile for a Node.js application",
        True,
        "near_repeat",
    ),
    ("Implement a binary search in Rust", "Implement binary search in Rust", True, "near_repeat"),
    (
        "Fix the memory leak in the image cache",
        "fix the memroy leak in the image cache",
        True,
        "near_repeat",
    ),
    (
        "Parse JSON logs and count errors per hour",
        "Parse JSON logs and count the errors per hour",
        True,
        "near_repeat",
    ),
    (
        "Write a SQL query that returns the top 5 customers by revenue",
        "Write an SQL query which returns the top 5 customers by revenue",
        True,
        "near_repeat",
    ),
    (
        "Create a CLI tool in Go that downloads a URL",
        "So, create a CLI tool in Go that downloads a URL",
        True,
        "near_repeat",
    ),
    # should-hit: paraphrases
    (
        "How do I reverse a list in Python?",
        "What's the way to reverse a Python list?",
        True,
        "paraphrase",
    ),
    ("Build a login page in React", "Create a React login page", True, "paraphrase"),
    (
        "Write a function that checks whether a string is a palindrome",
        "Write a function to check if a string is a palindrome",
        True,
        "paraphrase",
    ),
    (
        "Delete all rows older than 30 days from the events table",
        "Remove every row older than 30 days from the events table",
        True,
        "paraphrase",
    ),
    (
        "How can I speed up my Django queries?",
        "How do I make my Django queries faster?",
        True,
        "paraphrase",
    ),
    (
        "Generate a random password in JavaScript",
        "Create a random password using JavaScript",
        True,
        "paraphrase",
    ),
    (
        "Convert a datetime to a Unix timestamp in Python",
        "In Python, how do I turn a datetime into a Unix timestamp?",
        True,
        "paraphrase",
    ),
    (
        "Write a bash script to back up a directory every night",
        "Write a shell script that backs up a directory nightly",
        True,
        "paraphrase",
    ),
    (
        "Add pagination to the users endpoint",
        "Implement pagination for the users endpoint",
        True,
        "paraphrase",
    ),
    (
        "Sort a dictionary by value in Python",
        "How do I sort a Python dict by its values?",
        True,
        "paraphrase",
    ),
    (
        "Make the navbar sticky with CSS",
        "Using CSS, make the navigation bar stick to the top",
        True,
        "paraphrase",
    ),
    (
        "Set up logging to a file in a Flask app",
        "Configure a Flask app to log to a file",
        True,
        "paraphrase",
    ),
    (
        "Write a regex that validates an email address",
        "Write a regular expression to validate email addresses",
        True,
        "paraphrase",
    ),
    (
        "How do I start a new Rust project with Cargo?",
        "How do I create a new Rust project using Cargo?",
        True,
        "paraphrase",
    ),
    (
        "Write a Kubernetes deployment for a Redis instance",
        "Create a Kubernetes deployment manifest for Redis",
        True,
        "paraphrase",
    ),
    (
        "Explain how async/await works in JavaScript",
        "How does async/await work in JavaScript?",
        True,
        "paraphrase",
    ),
    # traps: negation / antonyms
    (
        "Build a REST API with JWT authentication in FastAPI",
        "Build a REST API without authentication in FastAPI",
        False,
        "negation",
    ),
    ("Add a column to the users table", "Remove a column from the users table", False, "negation"),
    ("Enable CORS in my Express server", "Disable CORS in my Express server", False, "negation"),
    ("Encrypt a file with AES in Python", "Decrypt a file with AES in Python", False, "negation"),
    (
        "Write a test that checks the cache is used",
        "Write a test that checks the cache is not used",
        False,
        "negation",
    ),
    ("Make the function synchronous", "Make the function asynchronous", False, "negation"),
    ("Upload a file to S3 with boto3", "Download a file from S3 with boto3", False, "negation"),
    ("Export the table to CSV", "Import the table from CSV", False, "negation"),
    ("Make the S3 bucket public", "Make the S3 bucket private", False, "negation"),
    ("Find the maximum value in an array", "Find the minimum value in an array", False, "negation"),
    ("Why does my query use the index?", "Why doesn't my query use the index?", False, "negation"),
    ("Sort the list in ascending order", "Sort the list in descending order", False, "negation"),
    # traps: entities / technologies
    (
        "Build a REST API with JWT authentication in FastAPI",
        "Build a REST API with JWT authentication in Flask",
        False,
        "entity",
    ),
    ("Connect to PostgreSQL from Node.js", "Connect to MySQL from Node.js", False, "entity"),
    ("Create a todo app in React", "Create a todo app in Vue", False, "entity"),
    ("Deploy the app to AWS Lambda", "Deploy the app to Google Cloud Functions", False, "entity"),
    ("Write a GraphQL schema for a blog", "Write a REST schema for a blog", False, "entity"),
    (
        "Containerise the service with Docker",
        "Containerise the service with Podman",
        False,
        "entity",
    ),
    ("How do I use useEffect in React?", "How do I use useMemo in React?", False, "entity"),
    ("Write unit tests with pytest", "Write unit tests with unittest", False, "entity"),
    # traps: numbers / versions / dates
    ("Upgrade the project to Python 3.11", "Upgrade the project to Python 3.12", False, "number"),
    (
        "Design a chat backend for 10 users",
        "Design a chat backend for 10,000 users",
        False,
        "number",
    ),
    (
        "Retry the request 3 times with backoff",
        "Retry the request 5 times with backoff",
        False,
        "number",
    ),
    ("Migrate from React 17 to React 18", "Migrate from React 16 to React 18", False, "number"),
    ("Set the timeout to 30 seconds", "Set the timeout to 30 minutes", False, "number"),
    ("Show sales for Q1 2023", "Show sales for Q2 2023", False, "number"),
    ("Use Java 8 streams to group by key", "Use Java 21 streams to group by key", False, "number"),
    ("Resize images to 256x256", "Resize images to 512x512", False, "number"),
    # traps: order / direction
    ("Convert JSON to YAML", "Convert YAML to JSON", False, "order"),
    (
        "Migrate the database from MySQL to PostgreSQL",
        "Migrate the database from PostgreSQL to MySQL",
        False,
        "order",
    ),
    ("Translate this Python code to Go", "Translate this Go code to Python", False, "order"),
    ("Copy files from the server to S3", "Copy files from S3 to the server", False, "order"),
    # traps: scope
    (
        "Set up a GitHub Actions workflow that runs pytest",
        "Set up a Github Actions workflow that runs pytest on every push",
        False,
        "scope",
    ),
    ("Write a login form", "Write a login form with two-factor authentication", False, "scope"),
    (
        "Build a REST API for the admin users",
        "Build a REST API for the guest users",
        False,
        "scope",
    ),
    ("Write integration tests for the API", "Write unit tests for the API", False, "scope"),
    ("Add dark mode to the mobile app", "Add dark mode to the web app", False, "scope"),
    ("Create a landing page", "Create a responsive landing page", False, "scope"),
    ("Write a script to delete temp files", "Write a script to delete all files", False, "scope"),
    ("Optimise the query for reads", "Optimise the query for writes", False, "scope"),
    (
        "Build a websocket server for the frontend",
        "Build a websocket client for the frontend",
        False,
        "scope",
    ),
    ("Parse the config file", "Parse the config file recursively", False, "scope"),
    ("Implement a linked list", "Implement a doubly linked list", False, "scope"),
]


# Hand-written pairs of the same kinds, written after the second round of rule changes and
# evaluated as they are: a check on wording the rules were never adjusted to.
FRESH_PAIRS: list[tuple[str, str, bool, str]] = [
    # should-hit: near repeats
    (
        "Write a Python function that merges two sorted lists",
        "write a python fucntion that merges two sorted lists",
        True,
        "near_repeat",
    ),
    (
        "Create a FastAPI endpoint that uploads an image to S3",
        "Create a FastAPI endpoint that uploads an image to S3!",
        True,
        "near_repeat",
    ),
    (
        "How do I undo the last git commit?",
        "how do i undo the last git commit??",
        True,
        "near_repeat",
    ),
    (
        "Generate a TypeScript interface from this JSON",
        "Pls generate a TypeScript interface from this JSON",
        True,
        "near_repeat",
    ),
    (
        "Write a Go HTTP server with graceful shutdown",
        "Write a Go HTTP server with gracefull shutdown",
        True,
        "near_repeat",
    ),
    (
        "Set up ESLint and Prettier in a Next.js project",
        "set up eslint and prettier in a next.js project",
        True,
        "near_repeat",
    ),
    (
        "Explain the difference between a process and a thread",
        "Can you explain the difference between a process and a thread?",
        True,
        "near_repeat",
    ),
    (
        "Build a CRUD app with Django and PostgreSQL",
        "Build a CRUD app with Django and Postgres",
        True,
        "near_repeat",
    ),
    (
        "Write a unit test for the login view",
        "Write a unit test for the login veiw",
        True,
        "near_repeat",
    ),
    ("How do I cancel my order?", "Hello, how do I cancel my order?", True, "near_repeat"),
    ("What is the refund policy?", "whats the refund policy", True, "near_repeat"),
    (
        "Write a cron job that clears the cache every hour",
        "Write a cron job which clears the cache every hour",
        True,
        "near_repeat",
    ),
    # should-hit: paraphrases
    (
        "Remove duplicates from a list in Python",
        "How can I deduplicate a Python list?",
        True,
        "paraphrase",
    ),
    (
        "Read a file line by line in Java",
        "In Java, how do I read a file one line at a time?",
        True,
        "paraphrase",
    ),
    (
        "Write a function that returns the factorial of a number",
        "Implement a factorial function",
        True,
        "paraphrase",
    ),
    (
        "How do I check which version of Node.js is installed?",
        "How can I see my installed Node.js version?",
        True,
        "paraphrase",
    ),
    (
        "Create a Docker Compose file for a Flask app and Redis",
        "Write a docker-compose.yml with a Flask service and a Redis service",
        True,
        "paraphrase",
    ),
    (
        "Make an HTTP GET request in Rust",
        "How do I send a GET request using Rust?",
        True,
        "paraphrase",
    ),
    (
        "Build a React hook that fetches data from an API",
        "Write a custom React hook for fetching API data",
        True,
        "paraphrase",
    ),
    (
        "Validate a form in Vue before submitting it",
        "How do I validate a Vue form before submission?",
        True,
        "paraphrase",
    ),
    (
        "Write a SQL query to find duplicate emails in the users table",
        "Find duplicate email addresses in the users table with SQL",
        True,
        "paraphrase",
    ),
    (
        "Rename a column in a pandas DataFrame",
        "How do I change a column name in a pandas DataFrame?",
        True,
        "paraphrase",
    ),
    (
        "Convert a string to an integer in JavaScript",
        "How do I parse a string as an int in JavaScript?",
        True,
        "paraphrase",
    ),
    (
        "Write a script that pings a list of hosts",
        "Create a script to ping several hosts from a list",
        True,
        "paraphrase",
    ),
    (
        "Add a dark theme to my Tailwind site",
        "How do I support a dark theme on my Tailwind website?",
        True,
        "paraphrase",
    ),
    (
        "How do I delete a branch in git?",
        "What's the git command to remove a branch?",
        True,
        "paraphrase",
    ),
    (
        "Schedule a task to run daily with Celery",
        "Run a Celery task once a day",
        True,
        "paraphrase",
    ),
    (
        "Log errors to a file in Node.js",
        "In Node.js, write error logs to a file",
        True,
        "paraphrase",
    ),
    (
        "How do I reset my password?",
        "I need to change my password, how do I do it?",
        True,
        "paraphrase",
    ),
    ("Where is my parcel?", "Can you tell me where my package is?", True, "paraphrase"),
    ("Do you ship to Canada?", "Can you deliver to Canada?", True, "paraphrase"),
    (
        "How do I update my billing address?",
        "How can I change the billing address on my account?",
        True,
        "paraphrase",
    ),
    # traps: negation / antonym
    (
        "Write a regex that matches email addresses",
        "Write a regex that does not match email addresses",
        False,
        "negation",
    ),
    (
        "Show me how to enable logging in Django",
        "Show me how to turn off logging in Django",
        False,
        "negation",
    ),
    (
        "Create a function that compresses a string",
        "Create a function that decompresses a string",
        False,
        "negation",
    ),
    ("Serialize an object to JSON in C#", "Deserialize JSON to an object in C#", False, "negation"),
    (
        "Install the package globally with npm",
        "Uninstall the package globally with npm",
        False,
        "negation",
    ),
    (
        "How do I lock a row in PostgreSQL?",
        "How do I unlock a row in PostgreSQL?",
        False,
        "negation",
    ),
    (
        "Write a function that checks if a number is even",
        "Write a function that checks if a number is odd",
        False,
        "negation",
    ),
    ("Convert the text to uppercase", "Convert the text to lowercase", False, "negation"),
    ("Show hidden files in the terminal", "Hide files in the terminal", False, "negation"),
    ("Allow requests from any origin", "Block requests from any origin", False, "negation"),
    (
        "Is it safe to store the API key in the frontend?",
        "Why is it dangerous to store the API key in the frontend?",
        False,
        "negation",
    ),
    ("Can I get a refund?", "Why can't I get a refund?", False, "negation"),
    # traps: entity / technology
    ("Write a Kafka consumer in Java", "Write a Kafka consumer in Kotlin", False, "entity"),
    ("Deploy a Next.js app to Vercel", "Deploy a Next.js app to Netlify", False, "entity"),
    (
        "Set up authentication with Auth0 in React",
        "Set up authentication with Firebase in React",
        False,
        "entity",
    ),
    ("Train a model with PyTorch", "Train a model with TensorFlow", False, "entity"),
    (
        "Connect to Redis from a Spring Boot app",
        "Connect to MongoDB from a Spring Boot app",
        False,
        "entity",
    ),
    ("How do I install Docker on Ubuntu?", "How do I install Docker on Fedora?", False, "entity"),
    ("Style the button with Tailwind", "Style the button with Bootstrap", False, "entity"),
    (
        "Write an Ansible playbook to install nginx",
        "Write an Ansible playbook to install Apache",
        False,
        "entity",
    ),
    (
        "Does the store in Leeds open on bank holidays?",
        "Does the store in Leicester open on bank holidays?",
        False,
        "entity",
    ),
    # traps: number / version / date
    ("Create a Node 18 Dockerfile", "Create a Node 20 Dockerfile", False, "number"),
    ("Limit uploads to 5 MB", "Limit uploads to 50 MB", False, "number"),
    (
        "Paginate results with 20 items per page",
        "Paginate results with 50 items per page",
        False,
        "number",
    ),
    ("Write a migration for Rails 6", "Write a migration for Rails 7", False, "number"),
    (
        "Generate a report of orders from last week",
        "Generate a report of orders from last month",
        False,
        "number",
    ),
    ("Cache the response for 5 minutes", "Cache the response for 5 hours", False, "number"),
    ("Use Python 2 print syntax", "Use Python 3 print syntax", False, "number"),
    ("Run the backup job at 2am", "Run the backup job at 2pm", False, "number"),
    (
        "Split the array into chunks of three",
        "Split the array into chunks of four",
        False,
        "number",
    ),
    (
        "Is the office closed on Easter Monday?",
        "Is the office closed on Good Friday?",
        False,
        "number",
    ),
    # traps: order / direction
    (
        "Convert Celsius to Fahrenheit in Python",
        "Convert Fahrenheit to Celsius in Python",
        False,
        "order",
    ),
    ("Port this code from Java to Kotlin", "Port this code from Kotlin to Java", False, "order"),
    (
        "Sync files from the laptop to the NAS",
        "Sync files from the NAS to the laptop",
        False,
        "order",
    ),
    (
        "Copy the table from staging to production",
        "Copy the table from production to staging",
        False,
        "order",
    ),
    ("Cast a float to an int in C", "Cast an int to a float in C", False, "order"),
    # traps: scope / substitution
    (
        "Write a REST API for managing books",
        "Write a REST API for managing books with rate limiting",
        False,
        "scope",
    ),
    ("Build a chat app with WebSockets", "Build a group chat app with WebSockets", False, "scope"),
    (
        "Write a function to reverse a string",
        "Write a function to reverse each word in a string",
        False,
        "scope",
    ),
    ("Create a login page", "Create a login page with social login", False, "scope"),
    (
        "Write a Python script to resize images",
        "Write a Python script to resize images and add a watermark",
        False,
        "scope",
    ),
    ("Parse a CSV file", "Parse a large CSV file in chunks", False, "scope"),
    ("Implement a stack", "Implement a thread-safe stack", False, "scope"),
    ("Write a binary search tree", "Write a balanced binary search tree", False, "scope"),
    ("Add a search bar to the header", "Add a search bar to the footer", False, "scope"),
    ("Validate the password length", "Validate the password strength", False, "scope"),
    (
        "How do I return an item bought online?",
        "How do I return an item bought in a shop?",
        False,
        "scope",
    ),
    (
        "Write a script to rename files",
        "Write a script to rename and compress files",
        False,
        "scope",
    ),
]


@dataclass(frozen=True)
class Pair:
    id: str
    category: str
    a: str
    b: str
    same: bool
    style: str = ""


def default_pairs_path() -> Path:
    return Path(str(importlib.resources.files("fow_cache").joinpath("data", "pairs.jsonl")))


def load_pairs(path: Path) -> list[Pair]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            pairs.append(
                Pair(
                    row["id"],
                    row["category"],
                    row["a"],
                    row["b"],
                    bool(row["same_answer"]),
                    row.get("style", ""),
                )
            )
    return pairs


def text_vectors(texts: list[str], cache_dir: Path) -> np.ndarray:
    """Embeddings of ``texts`` (sorted, unique), cached on disk by a hash of the texts."""
    from facilitair.cache.embeddings import LocalEmbedder

    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache_dir / f"facilitair-guard-bench-{digest}.npz"
    if path.exists():
        stored = np.load(path, allow_pickle=False)
        vectors = stored["vectors"]
    else:
        embedder = LocalEmbedder()
        started = time.perf_counter()
        vectors = np.concatenate(
            [embedder.embed_sync(texts[i : i + 64]) for i in range(0, len(texts), 64)]
        )
        print(
            f"(embedded {len(texts)} texts in {time.perf_counter() - started:.1f} s, "
            f"cached in {path})"
        )
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(path, vectors=vectors)
    return np.asarray(vectors)


def cosines(pairs: list[Pair], cache_dir: Path) -> np.ndarray:
    texts = sorted({p.a for p in pairs} | {p.b for p in pairs})
    vectors = text_vectors(texts, cache_dir)
    index = {t: i for i, t in enumerate(texts)}
    a = vectors[[index[p.a] for p in pairs]]
    b = vectors[[index[p.b] for p in pairs]]
    return np.asarray((a * b).sum(axis=1), dtype=np.float64)


def rates(
    sims: np.ndarray, passed: np.ndarray, same: np.ndarray, t: float, use_guard: bool
) -> tuple[float, float, int, int]:
    served = sims >= t - 1e-9
    if use_guard:
        served &= passed
    hits = int((served & same).sum())
    wrong = int((served & ~same).sum())
    n_same = max(int(same.sum()), 1)
    n_trap = max(int((~same).sum()), 1)
    return hits / n_same, wrong / n_trap, hits, wrong


def choose_threshold(
    sims: np.ndarray, passed: np.ndarray, same: np.ndarray, grid: list[float], target_wrong: float
) -> float:
    """The lowest threshold (most hits) whose wrong rate stays within the target."""
    for t in grid:
        _, wrong, _, _ = rates(sims, passed, same, t, True)
        if wrong <= target_wrong:
            return t
    return grid[-1]


def pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def report_set(
    name: str, rows: list[tuple[str, str, bool, str]], guard: Guard, t: float, cache_dir: Path
) -> None:
    pairs = [Pair(f"{name}-{i:03d}", c, a, b, s) for i, (a, b, s, c) in enumerate(rows)]
    sims = cosines(pairs, cache_dir)
    same = np.array([p.same for p in pairs])
    decisions = [guard.check(p.a, p.b) for p in pairs]
    passed = np.array([d is None for d in decisions])
    s0, w0, _, _ = rates(sims, passed, same, t, False)
    s1, w1, h1, x1 = rates(sims, passed, same, t, True)
    print(f"  cosine alone:   served {pct(s0)}, wrong {pct(w0)}")
    print(
        f"  cosine + guard: served {pct(s1)} ({h1}/{int(same.sum())}), "
        f"wrong {pct(w1)} ({x1}/{int((~same).sum())})"
    )
    by_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p, ok, sim in zip(pairs, passed, sims, strict=True):
        by_cat[p.category][1] += 1
        by_cat[p.category][0] += int(bool(ok) and sim >= t - 1e-9)
    print(
        "  served per category: "
        + ", ".join(f"{c} {v[0]}/{v[1]}" for c, v in sorted(by_cat.items()))
    )
    rules = Counter(d.rule for d in decisions if d is not None)
    print("  refusals by rule: " + ", ".join(f"{r} {rules[r]}" for r in RULES if rules[r]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=None, help="labelled pairs (jsonl)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    parser.add_argument(
        "--threshold",
        type=float,
        default=RECOMMENDED_THRESHOLD,
        help=f"threshold for the detailed figures (default {RECOMMENDED_THRESHOLD})",
    )
    parser.add_argument("--target-wrong", type=float, default=0.01)
    parser.add_argument("--splits", type=int, default=200, help="random half splits")
    parser.add_argument(
        "--show",
        type=int,
        default=0,
        help="print up to N served traps, refused should-hits and distractors",
    )
    args = parser.parse_args(argv)

    pairs = load_pairs(args.pairs or default_pairs_path())
    sims = cosines(pairs, args.cache_dir)
    same = np.array([p.same for p in pairs])

    guard = Guard()
    started = time.perf_counter()
    decisions = [guard.check(p.a, p.b) for p in pairs]
    cold = (time.perf_counter() - started) / len(pairs)
    timings = []
    for p in pairs:
        t0 = time.perf_counter()
        guard.check(p.a, p.b)
        timings.append(time.perf_counter() - t0)
    passed = np.array([d is None for d in decisions])

    grid = [round(0.50 + 0.01 * i, 2) for i in range(50)]
    print(f"{len(pairs)} pairs: {int(same.sum())} should-hit, {int((~same).sum())} traps")
    print(
        f"guard cost: {1000 * cold:.3f} ms/check cold (both texts' features computed), "
        f"warm mean {1000 * statistics.mean(timings):.3f} ms, "
        f"p99 {1000 * float(np.percentile(timings, 99)):.3f} ms"
    )
    print()
    print("threshold | cosine alone: served  wrong | cosine + guard: served  wrong")
    for t in grid:
        if round(t * 100) % 5 and not (0.70 <= t <= 0.80):
            continue
        s0, w0, _, _ = rates(sims, passed, same, t, False)
        s1, w1, h1, x1 = rates(sims, passed, same, t, True)
        print(
            f"   {t:.2f}   |              {pct(s0)} {pct(w0)} |"
            f"                {pct(s1)} {pct(w1)}  ({h1} hits, {x1} wrong)"
        )

    chosen = args.threshold
    s1, w1, h1, x1 = rates(sims, passed, same, chosen, True)
    print(
        f"\nat T = {chosen:.2f}: served {pct(s1)} of should-hits ({h1}), "
        f"wrong {pct(w1)} of traps ({x1})"
    )

    print("\nper category at T (pairs with cosine >= T / served after the guard / total):")
    cats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for p, s, ok in zip(pairs, sims, passed, strict=True):
        key = f"{p.category}/{p.style}" if p.style else p.category
        cats[key][2] += 1
        if s >= chosen - 1e-9:
            cats[key][0] += 1
            cats[key][1] += int(ok)
    hit_cats = {p.category for p in pairs if p.same}
    for key in sorted(cats, key=lambda k: (k.split("/")[0] not in hit_cats, k)):
        above, served, total = cats[key]
        print(f"  {key:24s} {above:4d} / {served:4d} / {total:4d}")

    print("\nrefusals by rule (the first rule that refused), all pairs | pairs with cosine >= T:")
    print(f"  {'rule':13s} {'traps':>6s} {'hits':>6s} | {'traps':>6s} {'hits':>6s}")
    for rule in RULES:
        rows = [
            (p, s)
            for p, s, d in zip(pairs, sims, decisions, strict=True)
            if d is not None and d.rule == rule
        ]
        traps = sum(not p.same for p, _ in rows)
        hits = sum(p.same for p, _ in rows)
        traps_t = sum(not p.same for p, s in rows if s >= chosen - 1e-9)
        hits_t = sum(p.same for p, s in rows if s >= chosen - 1e-9)
        print(f"  {rule:13s} {traps:6d} {hits:6d} | {traps_t:6d} {hits_t:6d}")

    # out-of-sample: choose T on one half, report on the other
    rng = random.Random(20240601)
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_stratum[f"{p.category}/{p.style}"].append(i)
    halves: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(args.splits):
        tune_idx: list[int] = []
        test_idx: list[int] = []
        for members in by_stratum.values():
            shuffled = members[:]
            rng.shuffle(shuffled)
            half = len(shuffled) // 2
            tune_idx += shuffled[:half]
            test_idx += shuffled[half:]
        halves.append((np.array(tune_idx), np.array(test_idx)))
    print(
        f"\nsplit-half check ({args.splits} random stratified halves; T chosen on one half, "
        f"served/wrong measured on the other):"
    )
    for label, budget in (
        ("wrong <= target", args.target_wrong),
        ("wrong <= target/2", args.target_wrong / 2),
    ):
        picked, held_s, held_w = [], [], []
        for tune, test in halves:
            t = choose_threshold(sims[tune], passed[tune], same[tune], grid, budget)
            s, w, _, _ = rates(sims[test], passed[test], same[test], t, True)
            picked.append(t)
            held_s.append(s)
            held_w.append(w)
        print(
            f"  rule 'lowest T with {label}': T median {statistics.median(picked):.2f} "
            f"({min(picked):.2f}-{max(picked):.2f}); held-out served mean "
            f"{pct(statistics.mean(held_s))} (min {pct(min(held_s))}), wrong mean "
            f"{pct(statistics.mean(held_w))} (max {pct(max(held_w))}, "
            f"above {pct(args.target_wrong)} in "
            f"{pct(sum(w > args.target_wrong + 1e-9 for w in held_w) / len(held_w))} of splits)"
        )
    fixed_s, fixed_w = [], []
    for _, test in halves:
        s, w, _, _ = rates(sims[test], passed[test], same[test], chosen, True)
        fixed_s.append(s)
        fixed_w.append(w)
    print(
        f"  fixed T = {chosen:.2f} on the held-out halves: served mean "
        f"{pct(statistics.mean(fixed_s))} (min {pct(min(fixed_s))}), wrong mean "
        f"{pct(statistics.mean(fixed_w))} (max {pct(max(fixed_w))})"
    )

    # distractors: texts of *different* dev items that land near each other, as the queries of
    # a real cache land near other cached entries
    texts = sorted({p.a for p in pairs} | {p.b for p in pairs})
    index = {t: i for i, t in enumerate(texts)}
    linked = {(index[p.a], index[p.b]) for p in pairs} | {(index[p.b], index[p.a]) for p in pairs}
    vectors = text_vectors(texts, args.cache_dir)
    sim_matrix = vectors @ vectors.T
    cross: list[tuple[float, int, int, bool]] = []
    for i in range(len(texts)):
        for j in np.nonzero(sim_matrix[i, i + 1 :] >= 0.6)[0]:
            k = i + 1 + int(j)
            if (i, k) not in linked:
                ok = guard.check(texts[i], texts[k]) is None
                cross.append((float(sim_matrix[i, k]), i, k, ok))
    print(
        "\ndistractors: pairs of texts from different dev items (some are in fact the same "
        "question) with cosine >= T, and how many the guard lets through:"
    )
    print(
        "  "
        + ", ".join(
            f"T {t:.2f}: {sum(1 for s, _, _, ok in cross if s >= t and ok)}/"
            f"{sum(1 for s, _, _, _ in cross if s >= t)}"
            for t in (0.60, 0.65, 0.70, 0.72, 0.75, 0.80, 0.85, 0.90)
        )
    )

    print(f"\ncode-assistant set (hand-written before tuning), T = {chosen:.2f}:")
    report_set("code", CODE_PAIRS, guard, chosen, args.cache_dir)
    print(
        f"\nfresh set (hand-written after the second tuning round, not tuned on), T = {chosen:.2f}:"
    )
    report_set("fresh", FRESH_PAIRS, guard, chosen, args.cache_dir)

    if args.show:
        print(f"\nserved traps at T = {chosen:.2f}:")
        rows3 = [
            (s, p)
            for p, s, ok in zip(pairs, sims, passed, strict=True)
            if not p.same and ok and s >= chosen - 1e-9
        ]
        for s, p in sorted(rows3, key=lambda r: -r[0])[: args.show]:
            print(f"  {s:.2f} {p.id:18s} {p.a!r} | {p.b!r}")
        print(f"\nrefused should-hits with cosine >= {chosen:.2f}:")
        rows2 = [
            (s, p, d)
            for p, s, d in zip(pairs, sims, decisions, strict=True)
            if p.same and d is not None and s >= chosen - 1e-9
        ]
        for s, p, d in sorted(rows2, key=lambda r: -r[0])[: args.show]:
            print(f"  {s:.2f} {p.id:18s} {p.a!r} | {p.b!r}\n       -> {d}")
        print(f"\ndistractors let through with cosine >= {chosen:.2f}:")
        for s, i, k, _ in sorted(
            (r for r in cross if r[3] and r[0] >= chosen), key=lambda r: -r[0]
        )[: args.show]:
            print(f"  {s:.2f} {texts[i]!r} | {texts[k]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

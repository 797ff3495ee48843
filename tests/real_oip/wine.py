"""Two real scikit-learn models behind MLServer, and a client that drives them as a user would.

Used by `tests/tests/real_oip_server_e2e.rs` (run with the venv that test creates):

    wine.py train DIR
        Trains the production model (logistic regression) and the shadow model (a five-tree
        random forest, which differs on about one row in a hundred) on scikit-learn's bundled
        wine data set (no download) and writes two MLServer model repositories, DIR/production (model "wine") and
        DIR/shadow (model "wine-v2"), each with its settings.json (ports from the arguments).

    wine.py drive DIR URL --requests N --clients C --seed S
        Sends N Open Inference Protocol requests of 1 to 400 rows (sampled from the data set)
        to URL/v2/models/wine/infer from C threads, each with its own `requests.Session` (default
        settings: keep-alive, Accept-Encoding gzip, deflate), checks every answer against the
        production model run offline, and prints one JSON line with the offline truth: how many
        requests the shadow model agrees with on every row, how many answers were gzipped.
"""

import argparse
import json
import os
import random
import sys
import threading

import joblib
import numpy as np
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.ensemble import RandomForestClassifier


def settings(http_port, grpc_port, metrics_port):
    return {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 0,
        "debug": False,
    }


def train(args):
    x, y = load_wine(return_X_y=True)
    models = {
        "production": ("wine", LogisticRegression(max_iter=5000), args.production_ports),
        "shadow": (
            "wine-v2",
            RandomForestClassifier(n_estimators=5, random_state=0),
            args.shadow_ports,
        ),
    }
    for role, (name, model, ports) in models.items():
        model.fit(x, y)
        repo = os.path.join(args.dir, role)
        os.makedirs(os.path.join(repo, name), exist_ok=True)
        joblib.dump(model, os.path.join(repo, name, "model.joblib"))
        with open(os.path.join(repo, name, "model-settings.json"), "w") as f:
            json.dump(
                {"name": name, "implementation": "mlserver_sklearn.SKLearnModel",
                 "parameters": {"uri": "./model.joblib"}},
                f,
            )
        http, grpc, metrics = (int(p) for p in ports.split(","))
        with open(os.path.join(repo, "settings.json"), "w") as f:
            json.dump(settings(http, grpc, metrics), f)


def drive(args):
    import requests

    x, _ = load_wine(return_X_y=True)
    rng = random.Random(args.seed)
    batches = [
        [rng.randrange(len(x)) for _ in range(rng.randint(1, 400))] for _ in range(args.requests)
    ]
    production = joblib.load(os.path.join(args.dir, "production", "wine", "model.joblib"))
    shadow = joblib.load(os.path.join(args.dir, "shadow", "wine-v2", "model.joblib"))
    url = args.url.rstrip("/") + "/v2/models/wine/infer"
    gzipped = [0]
    failures = []
    lock = threading.Lock()

    def client(indexes):
        session = requests.Session()
        for i in indexes:
            rows = x[batches[i]]
            payload = {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64",
                                   "data": rows.tolist()}]}
            answer = session.post(url, json=payload, timeout=30)
            expected = production.predict(rows).tolist()
            got = answer.json()["outputs"][0]["data"] if answer.ok else None
            with lock:
                if answer.headers.get("content-encoding") == "gzip":
                    gzipped[0] += 1
                if got != expected:
                    failures.append((i, answer.status_code, answer.text[:200]))
        session.close()

    threads = [
        threading.Thread(target=client, args=(range(c, args.requests, args.clients),))
        for c in range(args.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        print(f"production answered wrongly: {failures[:3]}", file=sys.stderr)
        sys.exit(1)
    agreed = sum(
        int(np.array_equal(production.predict(x[b]), shadow.predict(x[b]))) for b in batches
    )
    rows = sum(len(b) for b in batches)
    rows_agreed = sum(int((production.predict(x[b]) == shadow.predict(x[b])).sum()) for b in batches)
    print(json.dumps({"requests": args.requests, "agreed": agreed, "gzipped": gzipped[0],
                      "rows": rows, "rows_agreed": rows_agreed}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("dir")
    t.add_argument("--production-ports", default="8080,8090,8070", help="http,grpc,metrics")
    t.add_argument("--shadow-ports", default="8081,8091,8071", help="http,grpc,metrics")
    d = sub.add_parser("drive")
    d.add_argument("dir")
    d.add_argument("url")
    d.add_argument("--requests", type=int, default=60)
    d.add_argument("--clients", type=int, default=4)
    d.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    {"train": train, "drive": drive}[args.command](args)


if __name__ == "__main__":
    main()

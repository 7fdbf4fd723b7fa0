"""A try-on and a model-shot batch driven through the HTTP API alone, as an example client.

    python scripts/api_client.py --site http://127.0.0.1:8000 --photo me.jpg --garment 3
    python scripts/api_client.py --site http://127.0.0.1:8000 --token KEY --garment 3 \\
        --model-shots 2 --pose three_quarter --scene beach

Without ``--token`` it acts as an anonymous shopper (the session cookie owns the job); with a
merchant's token (staff create tokens in admin) it can make model shots of that merchant's
garments. It follows each job's progress once a second and saves the pictures next to itself.
Only the standard library is used.
"""

import argparse
import http.cookiejar
import json
import sys
import time
import urllib.request
import uuid
from pathlib import Path


class Client:
    """A minimal JSON/multipart client that keeps the session cookie between requests."""

    def __init__(self, site: str, token: str = ""):
        self.site = site.rstrip("/")
        self.headers = {"Authorization": f"Token {token}"} if token else {}
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        url = path if path.startswith("http") else self.site + path
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) address: {url}")
        request = urllib.request.Request(  # noqa: S310 (http(s) only, checked above)
            url,
            data=body,
            method=method,
            headers={**self.headers, **self._csrf(method), **(headers or {})},
        )
        with self.opener.open(request, timeout=60) as response:
            return response.read()

    def _csrf(self, method: str) -> dict:
        """Once the session cookie owns jobs, the site checks every write made with it as it
        checks a page's form: the CSRF token it handed out, and (over HTTPS) the Referer."""
        if method in ("GET", "HEAD", "OPTIONS"):
            return {}
        token = next((c.value for c in self.cookies if c.name == "csrftoken"), None)
        return {"X-CSRFToken": token, "Referer": self.site + "/"} if token else {}

    def json(self, method: str, path: str, data: dict | None = None):
        body = json.dumps(data).encode() if data is not None else None
        headers = {"Content-Type": "application/json"} if body else {}
        return json.loads(self.request(method, path, body, headers) or b"null")

    def multipart(self, path: str, fields: dict, files: dict[str, Path]):
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in fields.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n".encode()
            )
        for name, path_ in files.items():
            header = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{path_.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            )
            parts.append(header.encode() + path_.read_bytes() + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return json.loads(self.request("POST", path, body, headers))


def follow(client: Client, job_id: str, timeout: float = 600) -> dict:
    """Poll a job once a second until it ends; prints its progress."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.json("GET", f"/api/tryons/{job_id}/")
        print(f"  {job['status']:<9} {job['progress']:4.0%} {job['step']}", file=sys.stderr)
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(1)


def save_results(client: Client, job: dict, folder: Path) -> list[Path]:
    saved = []
    for result in job["results"]:
        path = folder / f"{job['id']}-{result['index']}.png"
        path.write_bytes(client.request("GET", result["image"]))
        saved.append(path)
    return saved


def try_on(client: Client, garment: int, photo: Path, params: dict) -> dict:
    """A shopper's try-on: the photo, consent, then the job followed to its end."""
    job = client.multipart(
        "/api/tryons/",
        {"garment": garment, "consent": "true", "params": json.dumps(params)},
        {"person_photo": photo},
    )
    return follow(client, job["id"])


def model_shots(client: Client, garment: int, count: int, pose: str, scene: str, params: dict):
    """A merchant's batch of model shots, each job followed to its end."""
    first = client.json(
        "POST",
        "/api/tryons/",
        {"kind": "model_shot", "garment": garment, "count": count, "pose": pose,
         "scene": scene, "params": params},
    )  # fmt: skip
    return [follow(client, job_id) for job_id in [first["id"], *first["batch_jobs"]]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default="")
    parser.add_argument("--garment", type=int, required=True)
    parser.add_argument("--photo", type=Path, help="your photo, for a try-on")
    parser.add_argument("--model-shots", type=int, default=0, help="how many (with --token)")
    parser.add_argument("--pose", default="front_standing")
    parser.add_argument("--scene", default="studio_white")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument(
        "--forget", action="store_true", help="then delete my photo and try-ons from the site"
    )
    args = parser.parse_args(argv)
    client = Client(args.site, args.token)
    params = {"steps": args.steps}
    jobs = []
    if args.photo:
        jobs.append(try_on(client, args.garment, args.photo, params))
    if args.model_shots:
        jobs += model_shots(client, args.garment, args.model_shots, args.pose, args.scene, params)
    args.out.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        files = save_results(client, job, args.out)
        print(
            json.dumps(
                {"job": job["id"], "status": job["status"], "files": [str(f) for f in files]}
            )
        )
    if args.forget:
        deleted = client.json("POST", "/api/tryons/delete-all/", {})["deleted"]
        print(json.dumps({"deleted": deleted}))
    return 0 if jobs and all(job["status"] == "succeeded" for job in jobs) else 1


if __name__ == "__main__":
    sys.exit(main())

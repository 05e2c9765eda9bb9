import subprocess, sys, tempfile, time
from tristore.services import RedisServer
engine, ordering, rounds = sys.argv[1], sys.argv[2], sys.argv[3]
with RedisServer() as server:
    d = tempfile.mkdtemp()
    t = time.monotonic()
    p = subprocess.run([sys.executable, "tests/reliability/failing_members.py", engine, ordering, d, rounds], input=server.url + "\n", capture_output=True, text=True)
    print("rc", p.returncode, f"{time.monotonic()-t:.1f}s")
    print(p.stdout[-3000:]); print(p.stderr[-3000:])

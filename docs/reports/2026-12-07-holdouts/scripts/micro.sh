#!/bin/bash
# usage: micro.sh SETUP BODY  -> instructions per execution of BODY (inside a function)
PY=/tmp/holdout/.venv/bin/python3.11
PYBIN=$(readlink -f $PY)
run() {
cat > snip_$1.py <<PYEOF
def f(n):
$(echo "$SETUP" | sed 's/^/    /')
    for _ in range(n):
$(echo "$BODY" | sed 's/^/        /')
f($1)
PYEOF
PYTHONHASHSEED=0 setarch -R valgrind --tool=callgrind --callgrind-out-file=cg_$1.out $PYBIN snip_$1.py 2>&1 | grep -o "Collected : [0-9]*" | awk '{print $3}'
}
a=$(run 200); b=$(run 400)
echo "$(( (b - a) / 200 ))"

# alive PID: true while PID runs and is not a zombie. Daemons started with nohup are reparented to
# PID 1, which may reap late, so a plain `kill -0` keeps succeeding for a while after they exit.
alive(){ local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1; [ -n "$s" ] && [ "${s#Z}" = "$s" ]; }

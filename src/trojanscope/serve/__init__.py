"""`trojanscope serve`: the platform where every model and data set a team takes in is checked
and remembered. A FastAPI app (app.py) over a database (db.py) whose jobs table is the queue;
workers (worker.py) claim jobs with leases and run the checks, the model work in a child process
after scan passed the file; the gate (gate.py) answers allowed or not, with reasons."""

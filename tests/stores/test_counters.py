"""Running totals for /metrics: kept as chunks finish, and made once from the chunk rows of a job store
that predates them."""

from sqlalchemy import text

from restyle.stores.jobs import JobStore


def test_totals_follow_the_chunks_and_an_old_store_gets_them_from_its_history(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    jobs = JobStore(url)
    for seconds in (0.2, 0.7, 1.5, 400.0):
        jobs.chunk_done("j1", "w1", 0, 10, seconds)
    latencies = jobs.chunk_latencies()
    assert dict(latencies.buckets)[0.5] == 1 and dict(latencies.buckets)[1] == 2 and dict(latencies.buckets)[2] == 3
    assert dict(latencies.buckets)[float("inf")] == latencies.count == 4 and latencies.total_s == 402.4
    assert jobs.frames_scored() == 40
    with jobs.engine.begin() as connection:  # a job store from before the counters
        connection.execute(text("DROP TABLE counters"))
    jobs.close()
    again = JobStore(url)
    assert again.chunk_latencies() == latencies and again.frames_scored() == 40
    again.chunk_done("j2", "w1", 0, 5, 3.0)
    assert again.frames_scored() == 45 and dict(again.chunk_latencies().buckets)[5] == 4

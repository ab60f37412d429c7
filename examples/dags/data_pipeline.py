# From our design documents: a cron-scheduled DAG of two Python tasks.
# Only the import lines differ from the Airflow original.
from datetime import datetime

from headwater import DAG, PythonOperator


def ingest_data():
    print("Ingesting data")


def process_data():
    print("Processing data")


dag = DAG(
    'data_pipeline',
    description='A simple data pipeline',
    schedule_interval='0 12 * * *',
    start_date=datetime(2021, 1, 1),
    catchup=False,
)

ingest_task = PythonOperator(task_id='ingest_data', python_callable=ingest_data, dag=dag)
process_task = PythonOperator(task_id='process_data', python_callable=process_data, dag=dag)

ingest_task >> process_task

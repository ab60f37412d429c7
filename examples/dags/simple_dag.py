# From our design documents: an Airflow-style daily DAG with a sensor and a bash task.
# Only the import lines differ from the Airflow original.
from datetime import datetime, timedelta

from headwater import DAG, BashOperator, TimeDeltaSensor

default_args = {
    'owner': 'airflow',
    'depends_on_past': False,
    'start_date': datetime(2018, 1, 8),
    'retries': 1,
    'retry_delay': timedelta(minutes=5),
}

dag = DAG('simple_dag', default_args=default_args, schedule_interval=timedelta(days=1))

t0 = TimeDeltaSensor(task_id='wait_a_second', delta=timedelta(seconds=1), dag=dag)

t1 = BashOperator(task_id='print_date_in_bash', bash_command='date', dag=dag)

t1.set_upstream(t0)

from setuptools import setup

setup(name="hello-setuppy", version="0.3.0", py_modules=["app"], install_requires=["bottle>=0.12"])
